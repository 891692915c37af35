"""Story-bootstrap intervals for bits per byte, and paired differences between models.

Stories are the unit of resampling: a model's bits per byte on a resample is the sum of its
per-story nats over the sum of the stories' bytes. Two models scored on the same stories are
compared on the same resamples (a paired difference), which cancels the variance that comes
from which stories happen to be hard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LN2 = math.log(2)


@dataclass(frozen=True)
class Interval:
    value: float
    lo: float
    hi: float


def resamples(n_stories: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_stories) counts: how often each story is drawn in each resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_stories, size=(n_boot, n_stories))
    counts = np.zeros((n_boot, n_stories), dtype=np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def bits_per_byte(nats: np.ndarray, story_bytes: np.ndarray, weights: np.ndarray | None = None):
    """bits/byte of per-story ``nats`` over ``story_bytes`` (each resample's, with ``weights``)."""
    if weights is None:
        return float(nats.sum() / story_bytes.sum() / LN2)
    return (weights @ nats) / (weights @ story_bytes) / LN2


def bootstrap(
    nats: np.ndarray, story_bytes: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> Interval:
    """Percentile interval of bits per byte over the resamples ``weights``."""
    boot = bits_per_byte(nats, story_bytes, weights)
    a = (1 - level) / 2
    return Interval(bits_per_byte(nats, story_bytes), *np.quantile(boot, [a, 1 - a]))


def paired_difference(
    nats_a: np.ndarray,
    nats_b: np.ndarray,
    story_bytes: np.ndarray,
    weights: np.ndarray,
    level: float = 0.95,
) -> Interval:
    """bits/byte of a minus b, with the percentile interval over the same resamples."""
    return bootstrap(nats_a - nats_b, story_bytes, weights, level)
