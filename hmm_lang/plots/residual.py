"""Residual-stream PCA figures: explained variance and 2-D / 3-D scatter of tokens."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def explained_variance_figure(results: dict, k: int = 32) -> go.Figure:
    """Cumulative explained variance of the first k components, one line per hook."""
    fig = go.Figure()
    for hook, r in results.items():
        ratio = r.explained_variance_ratio[:k]
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, len(ratio) + 1), y=np.cumsum(ratio), mode="lines+markers", name=hook
            )
        )
    fig.update_layout(
        title="residual stream: cumulative explained variance",
        xaxis_title="principal components",
        yaxis_title="fraction of variance",
        yaxis_range=[0, 1.02],
        template="plotly_white",
    )
    return fig


def pca_scatter_figure(
    coords: np.ndarray, color: np.ndarray, hover: list[str], color_title: str, title: str
) -> go.Figure:
    """Points in the first 2 or 3 principal components, coloured by ``color``."""
    marker = dict(
        size=3 if coords.shape[1] == 3 else 4,
        color=color,
        colorscale="Viridis",
        colorbar=dict(title=color_title),
        opacity=0.7,
    )
    common = dict(
        x=coords[:, 0],
        y=coords[:, 1],
        mode="markers",
        marker=marker,
        text=hover,
        hovertemplate="%{text}<extra></extra>",
    )
    if coords.shape[1] >= 3:
        trace = go.Scatter3d(z=coords[:, 2], **common)
    else:
        trace = go.Scattergl(**common)
    fig = go.Figure(trace)
    fig.update_layout(title=title, template="plotly_white", width=820, height=700)
    if coords.shape[1] >= 3:
        fig.update_layout(scene=dict(xaxis_title="PC1", yaxis_title="PC2", zaxis_title="PC3"))
    else:
        fig.update_layout(xaxis_title="PC1", yaxis_title="PC2")
    return fig
