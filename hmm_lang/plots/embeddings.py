"""Similarity heatmaps of token embeddings, full and coarse-grained side by side."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def similarity_heatmap(
    sim: np.ndarray, labels: list[str], title: str = "cosine similarity"
) -> go.Figure:
    """(n, n) similarity with token labels on both axes; hover shows both tokens."""
    fig = go.Figure(_heatmap(sim, labels))
    fig.update_layout(title=title, template="plotly_white", width=800, height=760)
    fig.update_yaxes(autorange="reversed", showticklabels=len(labels) <= 64)
    fig.update_xaxes(showticklabels=len(labels) <= 64)
    return fig


def _heatmap(sim, labels, **kw) -> go.Heatmap:
    """Labels on the axes (categorical) when they are unique, as ``token_labels`` makes them
    ("id:piece"); repeated labels would merge cells, so then positions with labels on hover."""
    n = len(labels)
    if len(set(labels)) == n:
        axes = dict(x=labels, y=labels, hovertemplate="%{y}<br>%{x}<br>cos %{z:.3f}<extra></extra>")
    else:
        text = np.array(labels, dtype=object)
        axes = dict(
            x=np.arange(n),
            y=np.arange(n),
            customdata=np.stack(np.broadcast_arrays(text[:, None], text[None, :]), -1),
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>cos %{z:.3f}<extra></extra>",
        )
    return go.Heatmap(
        z=np.asarray(sim, dtype=np.float32), colorscale="balance", zmin=-1, zmax=1, **axes, **kw
    )


# cells per side drawn: a 4096 x 4096 heatmap is ~100 MB of HTML; 512 per side made each
# similarity figure 1.5 MB of data, 384 (a few hundred rows for the overview) 0.8 MB
# (docs/results/figures_4096.md)
MAX_SIDE = 384


def bin_matrix(sim: np.ndarray, labels: list[str], max_side: int = MAX_SIDE):
    """Mean-pool an (n, n) matrix into at most ``max_side`` bins per side of consecutive rows
    (in the given order); labels become "first .. last" of each bin."""
    n = len(sim)
    if n <= max_side:
        return np.asarray(sim, dtype=np.float32), list(labels), 1
    per = -(-n // max_side)
    edges = np.arange(0, n, per)
    sums = np.add.reduceat(np.add.reduceat(np.asarray(sim, np.float64), edges, 0), edges, 1)
    sizes = np.diff(np.append(edges, n))
    binned = sums / (sizes[:, None] * sizes[None, :])
    names = [f"{labels[a]} .. {labels[min(a + per, n) - 1]}" for a in edges]
    return binned.astype(np.float32), names, per


def coarse_grained_figure(
    sim: np.ndarray,
    labels: list[str],
    blocks: np.ndarray,
    block_names: list[str] | None = None,
    title: str = "similarity: full and coarse-grained",
    max_side: int = MAX_SIDE,
) -> go.Figure:
    """The full matrix (left) beside its k x k block means (right), each with a colorbar.

    ``blocks`` is the coarse-grained matrix of the same (already ordered) tokens. Its colour
    range is the 99th percentile of the single off-diagonal similarities: a block mean is
    shown against what one pair of tokens typically reaches, so block means near 0 look near
    0 (scaling to the largest block mean would saturate means of +-0.004).
    """
    k = blocks.shape[0]
    names = block_names or [f"block {i}" for i in range(k)]
    shown, shown_labels, per = bin_matrix(sim, labels, max_side)
    left = "tokens" if per == 1 else f"{len(sim)} tokens, mean over {per} x {per} cells"
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(left, f"{k} x {k} block means (off-diagonal)"),
        horizontal_spacing=0.15,
    )
    fig.add_trace(
        _heatmap(shown, shown_labels, colorbar=dict(x=0.42, len=0.9, title="cos")), row=1, col=1
    )
    s = np.asarray(sim, dtype=np.float64)
    off = np.abs(s[~np.eye(len(s), dtype=bool)]) if len(s) > 1 else np.abs(s).ravel()
    lim = float(np.nanpercentile(off, 99)) if off.size else 1.0
    lim = max(lim, float(np.nanmax(np.abs(blocks))) * 1e-3, 1e-6)
    fig.add_trace(
        go.Heatmap(
            z=np.asarray(blocks, dtype=np.float32),
            x=names,
            y=names,
            colorscale="balance",
            zmin=-lim,
            zmax=lim,
            colorbar=dict(x=1.0, len=0.9, title="mean cos"),
            hovertemplate="%{y} x %{x}<br>mean cos %{z:.4f}<extra></extra>",
            # cell labels only where they are drawn: k x k strings would double the figure
            text=np.round(blocks, 3) if k <= 16 else None,
            texttemplate="%{text}" if k <= 16 else None,
        ),
        row=1,
        col=2,
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", width=1250, height=620)
    return fig
