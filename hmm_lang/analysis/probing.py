"""Linear probes: ridge regression from activations to targets, scored by held-out R^2."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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


def group_sums(index: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, d) sums of the rows of ``y`` (n, d) by ``index`` (n,): ``np.add.at``, but
    vectorised (np.add.at takes minutes at 200k x 1024)."""
    out = torch.zeros(n_groups, y.shape[1], dtype=torch.float64)
    out.index_add_(
        0, torch.as_tensor(index, dtype=torch.long), torch.as_tensor(y, dtype=torch.float64)
    )
    return out.numpy()


def _folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(n,) fold of each row: whole groups (stories) dealt to k folds at random."""
    uniq, inv = np.unique(groups, return_inverse=True)
    if len(uniq) < k:
        raise HmmLangError(f"{k}-fold cross-validation needs at least {k} stories, got {len(uniq)}")
    fold_of = np.random.default_rng(seed).permutation(len(uniq)) % k
    return fold_of[inv]


class FoldedRidge:
    """Ridge probes from one feature matrix to many targets, k-fold cross-validated by story.

    Features are standardised once (an unsupervised step), and per-fold Gram matrices are
    computed once, so each target costs O(n p d) instead of a refit per fold and strength. The
    ridge strength is chosen per target and outer fold f on an inner split that never sees f
    (train on the folds other than f and f+1, validate on fold f+1): nested, so no test fold's
    labels choose its own probe."""

    def __init__(self, x: np.ndarray, groups: np.ndarray, k: int = 5, seed: int = 0):
        x = np.asarray(x, dtype=np.float64)
        if len(x) < 10:
            raise HmmLangError(f"a probe needs at least 10 rows, got {len(x)}")
        if k < 3:
            raise HmmLangError(f"nested cross-validation needs at least 3 folds, got {k}")
        self.k = k
        self.fold = _folds(groups, k, seed)
        xs = (x - x.mean(0)) / (x.std(0) + 1e-8)
        self.x = np.concatenate([xs, np.ones((len(xs), 1))], 1)  # intercept column, unpenalised
        self.rows = [np.flatnonzero(self.fold == f) for f in range(k)]
        self.gram = [self.x[r].T @ self.x[r] for r in self.rows]

    def _solve(self, folds: list[int], cross: list[np.ndarray], alpha: float) -> np.ndarray:
        g = sum(self.gram[f] for f in folds)
        n = sum(len(self.rows[f]) for f in folds)
        pen = alpha * n * np.eye(g.shape[0])
        pen[-1, -1] = 0.0
        return np.linalg.solve(g + pen, sum(cross[f] for f in folds))

    def _val_r2(self, w: np.ndarray, g: int, cross: list[np.ndarray], yv: np.ndarray) -> float:
        """R^2 of weights ``w`` on fold ``g`` from its Gram and cross products: O(p^2 d) per
        ridge strength instead of O(n p d); SSE = |y|^2 - 2 <W, X'y> + <W, X'X W>."""
        sq = float((yv**2).sum())
        sst = sq - float((yv.sum(0) ** 2).sum()) / max(len(yv), 1)
        sse = sq - 2 * float((w * cross[g]).sum()) + float((w * (self.gram[g] @ w)).sum())
        return 1 - sse / sst if sst > 0 else float("nan")

    def predict(self, y: np.ndarray) -> np.ndarray:
        """(n, d) out-of-fold predictions of ``y``."""
        y = np.asarray(y, dtype=np.float64)
        cross = [self.x[r].T @ y[r] for r in self.rows]
        pred = np.empty_like(y)
        for f in range(self.k):
            g = (f + 1) % self.k
            inner = [h for h in range(self.k) if h not in (f, g)]
            yv = y[self.rows[g]]
            scores = [self._val_r2(self._solve(inner, cross, a), g, cross, yv) for a in ALPHAS]
            best = ALPHAS[0 if np.isnan(scores).all() else int(np.nanargmax(scores))]
            w = self._solve([h for h in range(self.k) if h != f], cross, best)
            pred[self.rows[f]] = self.x[self.rows[f]] @ w
        return pred


def cv_predictions(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = 5, seed: int = 0
) -> np.ndarray:
    """(n, d) out-of-fold ridge predictions of ``y`` from ``x`` (see :class:`FoldedRidge`)."""
    if len(x) != len(y):
        raise HmmLangError(f"a probe needs matching rows (got {len(x)} and {len(y)})")
    return FoldedRidge(x, groups, k, seed).predict(y)


def cv_token_means(
    tokens: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = 5, seed: int = 0
) -> np.ndarray:
    """(n, d) out-of-fold mean of ``y`` over the training folds' positions with the same
    current token (the global mean for a token unseen there): the best any probe that sees
    only the current token can do, cross-fitted like :func:`cv_predictions`."""
    y = np.asarray(y, dtype=np.float64)
    fold = _folds(groups, k, seed)
    pred = np.empty_like(y)
    v = int(tokens.max()) + 1
    for f in range(k):
        tr = fold != f
        sums = group_sums(tokens[tr], y[tr], v)
        counts = np.bincount(tokens[tr], minlength=v)
        means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], y[tr].mean(0))
        pred[~tr] = means[tokens[~tr]]
    return pred


@dataclass
class StoryBootstrap:
    """Story-bootstrap resamples (counts per story) shared by every R^2 of one table, so
    differences between rows are paired."""

    counts: np.ndarray  # (B, S) how often each story is drawn in each resample
    story_of: np.ndarray  # (n,) story index 0..S-1 of each position

    @classmethod
    def draw(cls, groups: np.ndarray, n_boot: int = 1000, seed: int = 0) -> StoryBootstrap:
        uniq, inv = np.unique(groups, return_inverse=True)
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(len(uniq), np.full(len(uniq), 1 / len(uniq)), size=n_boot)
        return cls(counts.astype(np.float64), inv)

    def _sums(self, y: np.ndarray, pred: np.ndarray):
        s = self.counts.shape[1]
        n = np.bincount(self.story_of, minlength=s).astype(np.float64)
        sse = np.bincount(self.story_of, ((y - pred) ** 2).sum(1), minlength=s)
        sq = np.bincount(self.story_of, (y**2).sum(1), minlength=s)
        s1 = group_sums(self.story_of, y, s)
        return n, sse, sq, s1

    def r2(self, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """(B,) pooled R^2 of ``pred`` on each resample of the stories."""
        n, sse, sq, s1 = self._sums(np.asarray(y, np.float64), np.asarray(pred, np.float64))
        c = self.counts
        tot_n, tot_sse, tot_sq = c @ n, c @ sse, c @ sq
        sst = tot_sq - ((c @ s1) ** 2).sum(1) / tot_n
        return 1 - tot_sse / np.maximum(sst, 1e-300)


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
