"""Linear probes: ridge regression from activations to targets, scored by held-out R^2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmm_lang.errors import HmmLangError

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class ProbeResult:
    r2: float  # held-out, pooled over target dimensions (1 - SSE / SST)
    alpha: float  # ridge strength chosen on a slice of the training rows
    n_train: int
    n_test: int


def _ridge_fit(
    x: np.ndarray, y: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu_x, mu_y = x.mean(0), y.mean(0)
    xc = x - mu_x
    scale = xc.std(0) + 1e-8  # standardise features so one alpha fits all layers
    xs = xc / scale
    gram = xs.T @ xs + alpha * len(xs) * np.eye(xs.shape[1])
    w = np.linalg.solve(gram, xs.T @ (y - mu_y))
    return w / scale[:, None], mu_x, mu_y


def _predict(model, x: np.ndarray) -> np.ndarray:
    w, mu_x, mu_y = model
    return (x - mu_x) @ w + mu_y


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Pooled R^2: 1 - sum of squared errors / total sum of squares around the mean."""
    sst = ((y - y.mean(0)) ** 2).sum()
    return float(1 - ((y - pred) ** 2).sum() / sst) if sst > 0 else float("nan")


def ridge_probe(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> ProbeResult:
    """Fit ridge x -> y on the training groups (stories), report R^2 on the held-out groups.

    The ridge strength is chosen from :data:`ALPHAS` on a quarter of the training groups.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y) or len(x) < 10:
        raise HmmLangError(f"a probe needs matching rows, at least 10 (got {len(x)} and {len(y)})")
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    test_g = rng.choice(uniq, size=max(1, int(len(uniq) * test_fraction)), replace=False)
    test = np.isin(groups, test_g)
    train_idx = np.flatnonzero(~test)
    tg = np.unique(groups[train_idx])
    val_g = rng.choice(tg, size=max(1, len(tg) // 4), replace=False)
    inner_val = np.isin(groups[train_idx], val_g)
    best = None
    for a in ALPHAS:
        m = _ridge_fit(x[train_idx[~inner_val]], y[train_idx[~inner_val]], a)
        r = r2_score(y[train_idx[inner_val]], _predict(m, x[train_idx[inner_val]]))
        if best is None or r > best[0]:
            best = (r, a)
    model = _ridge_fit(x[~test], y[~test], best[1])
    return ProbeResult(
        r2_score(y[test], _predict(model, x[test])), best[1], int((~test).sum()), int(test.sum())
    )
