"""Residual-stream PCA with bounded memory.

Activations of ``hook_resid_pre``/``hook_resid_post`` of every layer are collected over N
validation tokens in batches; only running sums (d and d x d, float64) and a fixed sample of
points per hook are kept, so memory does not grow with N. PCA is the eigendecomposition of the
accumulated covariance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.pretokenize import TokenStream


@dataclass
class PCAResult:
    mean: np.ndarray  # (d,)
    components: np.ndarray  # (d, d): row i is the i-th principal axis
    explained_variance: np.ndarray  # (d,) sorted, descending
    explained_variance_ratio: np.ndarray  # (d,) sums to 1 (up to rounding)

    def project(self, x: np.ndarray, k: int = 3) -> np.ndarray:
        """(n, k) coordinates of ``x`` (n, d) on the first k axes."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components[:k].T


def pca_from_moments(n: int, total: np.ndarray, outer: np.ndarray) -> PCAResult:
    """PCA from the count, sum (d,) and sum of outer products (d, d) of n points."""
    if n < 2:
        raise HmmLangError("PCA needs at least 2 points")
    mean = total / n
    cov = (outer - n * np.outer(mean, mean)) / (n - 1)
    evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    return PCAResult(mean, evecs[:, order].T, evals, evals / max(evals.sum(), 1e-300))


def pca(x: np.ndarray) -> PCAResult:
    """PCA of the rows of ``x`` (n, d)."""
    x = np.asarray(x, dtype=np.float64)
    return pca_from_moments(len(x), x.sum(0), x.T @ x)


@dataclass
class ResidualCollection:
    """Moments per hook and a fixed sample of points with their token, position and story."""

    hooks: list[str]
    n: int = 0
    total: dict[str, np.ndarray] = field(default_factory=dict)
    outer: dict[str, np.ndarray] = field(default_factory=dict)
    sample: dict[str, np.ndarray] = field(default_factory=dict)  # hook -> (m, d)
    sample_tokens: np.ndarray | None = None  # (m,) token id
    sample_positions: np.ndarray | None = None  # (m,) position in its story (0 = <s>)
    sample_story: np.ndarray | None = None  # (m,) story index

    def pca(self, hook: str) -> PCAResult:
        return pca_from_moments(self.n, self.total[hook], self.outer[hook])


def residual_hooks(n_layers: int) -> list[str]:
    """``hook_embed``-side first: resid_pre of every layer, then the last resid_post."""
    return [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)] + [
        f"blocks.{n_layers - 1}.hook_resid_post"
    ]


@torch.no_grad()
def collect_residuals(
    model,
    stream: TokenStream,
    bos_id: int,
    n_tokens: int = 100_000,
    hooks: list[str] | None = None,
    sample_size: int = 3000,
    batch_size: int = 32,
    seed: int = 0,
) -> ResidualCollection:
    """Run stories (``<s> story``, cut at n_ctx) through the model until ``n_tokens`` positions
    are seen; accumulate moments of each hook and keep a uniform sample of positions."""
    from hmm_lang.transformer.data import story_chunks

    n_layers = len(model.model.blocks)
    hooks = hooks or residual_hooks(n_layers)
    n_ctx = model.config.model.n_ctx
    x, _, mask, _ = story_chunks(stream, bos_id, n_ctx)
    # position within its story and story index of each chunk row
    story_of_row, start_of_row = _chunk_index(stream, n_ctx)
    d = model.config.model.d_model
    out = ResidualCollection(hooks)
    for h in hooks:
        out.total[h], out.outer[h] = np.zeros(d), np.zeros((d, d))
    rng = np.random.default_rng(seed)
    kept: dict[str, list[np.ndarray]] = {h: [] for h in hooks}
    meta: list[np.ndarray] = []
    device = next(model.parameters()).device
    target_rate = min(1.0, sample_size / max(1, n_tokens))
    for a in range(0, len(x), batch_size):
        if out.n >= n_tokens:
            break
        xb, mb = x[a : a + batch_size], mask[a : a + batch_size]
        _, cache = model.model.run_with_cache(
            xb.to(device), names_filter=lambda name: name in hooks
        )
        flat_mask = mb.reshape(-1).numpy()
        take = np.flatnonzero(flat_mask)[: n_tokens - out.n]
        pick = take[rng.random(len(take)) < target_rate]
        rows = np.arange(a, a + len(xb)).repeat(n_ctx)
        cols = np.tile(np.arange(n_ctx), len(xb))
        meta.append(
            np.stack(
                [
                    xb.reshape(-1).numpy()[pick],
                    start_of_row[rows[pick]] + cols[pick],
                    story_of_row[rows[pick]],
                ],
                axis=1,
            )
        )
        for h in hooks:
            acts = cache[h].reshape(-1, d).double().cpu().numpy()
            sel = acts[take]
            out.total[h] += sel.sum(0)
            out.outer[h] += sel.T @ sel
            kept[h].append(acts[pick].astype(np.float32))
        out.n += len(take)
    if out.n < 2:
        raise HmmLangError("too few validation tokens for a residual-stream PCA")
    for h in hooks:
        out.sample[h] = np.concatenate(kept[h])
    m = np.concatenate(meta)
    out.sample_tokens, out.sample_positions, out.sample_story = m[:, 0], m[:, 1], m[:, 2]
    return out


def _chunk_index(stream: TokenStream, n_ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of :func:`story_chunks`: its story index and its first position."""
    lengths = stream.offsets[1:] - stream.offsets[:-1] + 1  # with <s>, predictions = length
    story, start = [], []
    for i, n in enumerate(lengths):
        for a in range(0, int(n) - 1, n_ctx):
            story.append(i)
            start.append(a)
    return np.asarray(story), np.asarray(start)
