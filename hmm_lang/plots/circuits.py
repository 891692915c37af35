"""Figures of attention heads: weight matrices, QK/OV circuits, attention patterns."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _sym(z) -> float:
    return float(np.abs(np.asarray(z)).max()) or 1.0


def head_weights_figure(weights: dict, title: str) -> go.Figure:
    """W_Q, W_K, W_V (d_model x d_head) and W_O (d_head x d_model) of one head."""
    names = list(weights)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    for i, name in enumerate(names, start=1):
        z = weights[name].float().cpu().numpy()
        fig.add_trace(
            go.Heatmap(
                z=z,
                colorscale="balance",
                zmin=-_sym(z),
                zmax=_sym(z),
                showscale=i == len(names),
                name=name,
            ),
            row=1,
            col=i,
        )
        fig.update_xaxes(title_text="d_head" if name != "W_O" else "d_model", row=1, col=i)
        fig.update_yaxes(
            title_text="d_model" if name != "W_O" else "d_head", autorange="reversed", row=1, col=i
        )
    fig.update_layout(title=title, template="plotly_white", height=450)
    return fig


def circuit_figure(
    matrix, labels: list[str], title: str, row_title: str, col_title: str
) -> go.Figure:
    """An (n, n) circuit on token labels, centred colour scale."""
    z = np.asarray(matrix.float().cpu() if hasattr(matrix, "cpu") else matrix)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            colorscale="balance",
            zmin=-_sym(z),
            zmax=_sym(z),
            hovertemplate=f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>%{{z:.3f}}<extra></extra>",
        )
    )
    fig.update_layout(title=title, template="plotly_white", width=760, height=720)
    fig.update_xaxes(title_text=col_title)
    fig.update_yaxes(title_text=row_title, autorange="reversed")
    return fig


def attention_patterns_figure(
    patterns, labels: list[str], title: str = "attention patterns"
) -> go.Figure:
    """(n_layers, n_heads, pos, pos) patterns as a grid: one heatmap per head."""
    p = np.asarray(patterns.float().cpu())
    n_layers, n_heads = p.shape[:2]
    fig = make_subplots(
        rows=n_layers,
        cols=n_heads,
        subplot_titles=[f"L{i} H{j}" for i in range(n_layers) for j in range(n_heads)],
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
    )
    for i in range(n_layers):
        for j in range(n_heads):
            fig.add_trace(
                go.Heatmap(
                    z=p[i, j],
                    x=labels,
                    y=labels,
                    colorscale="Blues",
                    zmin=0,
                    zmax=1,
                    showscale=i == 0 and j == 0,
                    hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>",
                ),
                row=i + 1,
                col=j + 1,
            )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(
        title=title, template="plotly_white", height=260 * n_layers + 80, width=240 * n_heads + 120
    )
    return fig
