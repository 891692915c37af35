"""The dev split: stories carved from the training split, the only data any choice may read.

Early stopping, the kept iteration, restarts, pseudocounts, escape masses and starts are all
chosen on the dev split; the validation split is scored once, at the end. The carve is by
story, seeded (a splitmix64 hash of the story's index in the training split, salted so that it
is independent of the train/validation split), so it does not depend on the validation data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hmm_lang.errors import HmmLangError
from hmm_lang.sources import split_mask

DEV_FRACTION = 0.05
_SALT = 7919  # keeps the dev hash apart from the train/validation hash of the same seed


def dev_mask(n_stories: int, fraction: float = DEV_FRACTION, seed: int = 0) -> np.ndarray:
    """(n,) bool: True for the stories carved off as dev. At least one story goes each way
    when there are two or more."""
    if not 0.0 < fraction < 1.0:
        raise HmmLangError(f"--dev-fraction must be in (0, 1), got {fraction}")
    if n_stories < 2:
        raise HmmLangError(
            f"a dev split needs at least 2 training stories, got {n_stories}; use more data"
        )
    mask = split_mask(np.arange(n_stories), seed + _SALT, fraction)
    if not mask.any():
        mask[-1] = True
    if mask.all():
        mask[0] = False
    return mask


def carve_dev(
    sequences: Sequence[np.ndarray], fraction: float = DEV_FRACTION, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(fit sequences, dev sequences), in their original order."""
    mask = dev_mask(len(sequences), fraction, seed)
    fit = [s for s, m in zip(sequences, mask, strict=True) if not m]
    dev = [s for s, m in zip(sequences, mask, strict=True) if m]
    return fit, dev
