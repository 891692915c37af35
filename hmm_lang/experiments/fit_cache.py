"""Finished HMM fits of a ladder, kept on disk so that a stopped ladder resumes where it stopped.

A ladder at three vocabulary sizes with 65,536-state cloned HMMs runs for many hours on a CPU;
without this, a stop (a kill, a full disk, the end of a session) loses every finished fit. Each
fit is saved, atomically, as ``<folder>/<key>.npz`` once it ends, where the key hashes all that
determines it: the content of the training and validation token streams
(:meth:`TokenStream.digest`, so the tokenizer and the split are in it), every field of its
:class:`HMMFitConfig` and the source of the code that fits and scores it (``hmm_lang/hmm/``,
``devsplit.py``, ``ngram*.py``, ``scoring.py``). A fit with the same key is read back instead
of fitted again; a change of data, tokenizer, setting or fitting code gives a new key, so a
stale fit is never reused (an edit of a comment there refits too: safe, not minimal).
While a fit runs, its EM state is saved every few minutes as ``<key>.partial.<run>.pt``
(:mod:`hmm_lang.hmm.em_checkpoint`), so a fit stopped part-way (a dense K=1024 fit runs for
hours) continues from its last saved iteration; those files go once the finished fit is saved.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hmm_lang.atomic import atomic_path
from hmm_lang.hmm.fit import FitResult, HMMFitConfig, fit_hmm
from hmm_lang.pretokenize import TokenStream

log = logging.getLogger(__name__)

FORMAT = 1  # bump when a record's fields change: older records are then refitted


@dataclass
class FitRecord:
    """What the ladder keeps of a fit: its validation nats per story and its summary."""

    valid_story_nats: np.ndarray  # (S,) nats of each validation story
    valid_bits_per_byte: float
    dev_bits_per_byte: float
    stop_reason: str
    iterations: int
    seconds: float
    history: list[dict]  # EM curve: train and dev nats per iteration
    choices: dict  # what was chosen on dev
    n_parameters: int
    n_states: int
    reused: bool = False  # read back from disk rather than fitted in this process

    @classmethod
    def of(cls, res: FitResult) -> FitRecord:
        if res.valid_score is None or res.valid_story_nats is None:
            raise ValueError("a ladder fit needs a validation stream")
        return cls(
            valid_story_nats=np.asarray(res.valid_story_nats, dtype=np.float64),
            valid_bits_per_byte=res.valid_score.bits_per_byte,
            dev_bits_per_byte=res.dev_score.bits_per_byte,
            stop_reason=res.stop_reason,
            iterations=res.iterations,
            seconds=res.seconds,
            history=res.history,
            choices=res.choices,
            n_parameters=int(res.model.n_parameters),
            n_states=int(res.model.n_states),
        )

    def save(self, path: Path) -> None:
        meta = {k: v for k, v in asdict(self).items() if k not in ("valid_story_nats", "reused")}
        text = json.dumps(meta, default=_plain)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: no ".npz" added
            np.savez(f, nats=self.valid_story_nats, meta=np.array(text))

    @classmethod
    def load(cls, path: Path) -> FitRecord:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(valid_story_nats=z["nats"].copy(), reused=True, **meta)


@functools.cache
def code_digest() -> str:
    """A hash of the source files that fit and score an HMM."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.blake2b(digest_size=10)
    # the fitting code and what it computes with: the dev split, the KN escape, scoring
    deps = ["devsplit.py", "ngram.py", "ngram_counts.py", "scoring.py"]
    for f in sorted((root / "hmm").glob("*.py")) + [root / d for d in deps]:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _plain(obj):
    """numpy and torch scalars as Python numbers (they round-trip); anything else as text."""
    return obj.item() if hasattr(obj, "item") else str(obj)


def fit_key(train: TokenStream, valid: TokenStream, cfg: HMMFitConfig) -> str:
    """A hash of everything that determines a fit's result."""
    what = {
        "format": FORMAT,
        "code": code_digest(),
        "train": train.digest(),
        "valid": valid.digest(),
        "fit": asdict(cfg),
    }
    blob = json.dumps(what, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=10).hexdigest()


class FitCache:
    """Fit an HMM, or read back the same fit saved earlier in ``folder`` (None: keep nothing)."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None

    def fit(self, train: TokenStream, valid: TokenStream, cfg: HMMFitConfig) -> FitRecord:
        if self.folder is None:
            return FitRecord.of(fit_hmm(train, valid, cfg))
        path = self.folder / f"{fit_key(train, valid, cfg)}.npz"
        if path.exists():
            try:
                rec = FitRecord.load(path)
            except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
                # a damaged file (it cannot be half-written: saves are atomic): fit again
                log.warning("ignoring unreadable saved fit %s (%s)", path, e)
            else:
                log.info("reusing the saved fit %s (%d states)", path.name, rec.n_states)
                return rec
        # EM state mid-fit, so that a fit stopped part-way continues from its last saved state
        partial = self.folder / f"{path.stem}.partial"
        rec = FitRecord.of(fit_hmm(train, valid, cfg, checkpoint=partial))
        try:
            rec.save(path)
        except OSError as e:  # the fit itself is good: go on without keeping it
            log.warning("could not save the fit to %s (%s); a resume will fit it again", path, e)
        else:
            for f in self.folder.glob(f"{partial.name}.*.pt"):  # the finished fit replaces them
                f.unlink(missing_ok=True)
        return rec
