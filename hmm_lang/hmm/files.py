"""Open a saved HMM of any family (dense, cloned, blocked) by the ``kind`` its file records."""

from __future__ import annotations

from pathlib import Path

import torch

from hmm_lang.errors import HmmLangError

KINDS = ("categorical_hmm", "cloned_hmm", "blocked_hmm")


def hmm_kind(path: str | Path) -> str:
    """The family a saved HMM file holds: one of :data:`KINDS`; a one-line error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise HmmLangError(f"no HMM file at {path}; give the model.pt (or hmm.pt) of a fit")
    try:
        # memory-mapped: only the kind is read here, the model's own load reads the tensors
        d = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise HmmLangError(f"cannot read HMM file {path} ({type(e).__name__}); refit it") from None
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in KINDS:
        raise HmmLangError(f"{path} is not a saved HMM (kind {kind!r}); give a fit's model.pt")
    return kind


def load_hmm(path: str | Path):
    """(model, config) of a saved HMM: a CategoricalHMM, ClonedHMM or BlockedHMM."""
    from hmm_lang.hmm.blocked import BlockedHMM
    from hmm_lang.hmm.cloned import ClonedHMM
    from hmm_lang.hmm.model import CategoricalHMM

    classes = {
        "categorical_hmm": CategoricalHMM,
        "cloned_hmm": ClonedHMM,
        "blocked_hmm": BlockedHMM,
    }
    return classes[hmm_kind(path)].load(path)
