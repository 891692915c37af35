"""EM state saved after every M-step, so that a fit stopped mid-way (a kill, the end of a
session) continues from its last finished iteration instead of from the start.

A dense K=1024 fit at V=4096 on two CPU cores takes about 80 s per iteration and 100+ iterations;
the ladder's fit cache keeps only finished fits. The saved state is what :func:`run_em` needs
to go on exactly as if never stopped: the next model, the statistics that produced it, the kept
(best-on-dev) model with its statistics and iteration, the curve (the monitor replays it, so its
stop counters are restored) and the wall seconds spent so far. EM is deterministic given its
model, so a resumed fit ends with the parameters an uninterrupted one would have had.

The caller owns the path: it must name one fit (the ladder keys it by data, config and code, as
its finished fits), and removes the file once the fit's result is kept.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hmm_lang.atomic import atomic_path
from hmm_lang.hmm.monitor import IterationRecord

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class EMState:
    model: Any  # the model the next E-step starts from
    produced_by: Any  # the statistics whose M-step gave ``model``
    kept: tuple[Any, Any, int]  # (best-on-dev model, its statistics, its iteration)
    history: list[IterationRecord]
    seconds: float  # wall seconds of EM before this state was saved


def save_em_state(path: str | Path, state: EMState) -> None:
    """Write ``state`` atomically (a kill mid-write leaves the previous state in place)."""
    blob = {
        "format": FORMAT,
        "model": state.model,
        "produced_by": state.produced_by,
        "kept": state.kept,
        "history": [asdict(r) for r in state.history],
        "seconds": state.seconds,
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_em_state(path: str | Path) -> EMState | None:
    """The state saved at ``path``; None when there is none or it cannot be read (EM then
    starts from its first model, as without a checkpoint)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        # our own file, holding model objects (not only tensors): full unpickling
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if blob.get("format") != FORMAT:
            raise ValueError(f"format {blob.get('format')}, expected {FORMAT}")
        history = [IterationRecord(**r) for r in blob["history"]]
        kept = tuple(blob["kept"])
        return EMState(blob["model"], blob["produced_by"], kept, history, blob["seconds"])
    except Exception as e:  # noqa: BLE001 - any unreadable state means: start afresh
        log.warning("ignoring unreadable EM state %s (%s); EM starts from the beginning", path, e)
        return None
