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
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.07)
    for i, name in enumerate(names, start=1):
        z = weights[name].float().cpu().numpy()
        domain = fig.layout[f"xaxis{'' if i == 1 else i}"].domain
        fig.add_trace(
            go.Heatmap(
                z=z,
                colorscale="balance",
                zmin=-_sym(z),
                zmax=_sym(z),
                # each matrix has its own range: its own colour bar, beside its panel
                colorbar=dict(x=domain[1] + 0.005, thickness=8, len=0.8),
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
    idx = list(range(len(labels)))  # positions, not label strings: equal labels stay apart
    text = np.array(labels, dtype=object)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=idx,
            y=idx,
            customdata=np.stack(np.broadcast_arrays(text[:, None], text[None, :]), -1),
            colorscale="balance",
            zmin=-_sym(z),
            zmax=_sym(z),
            hovertemplate=f"{row_title} %{{customdata[0]}}<br>{col_title} %{{customdata[1]}}"
            "<br>%{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, template="plotly_white", width=760, height=720)
    ticks = dict(tickmode="array", tickvals=idx, ticktext=labels) if len(idx) <= 64 else {}
    fig.update_xaxes(title_text=col_title, **ticks)
    fig.update_yaxes(title_text=row_title, autorange="reversed", **ticks)
    return fig


def attention_patterns_figure(
    patterns, labels: list[str], title: str = "attention patterns"
) -> go.Figure:
    """(n_layers, n_heads, pos, pos) patterns as a grid: one heatmap per head."""
    p = np.asarray(patterns.float().cpu())
    n_layers, n_heads = p.shape[:2]
    # numeric positions (query rows, key columns): repeated tokens must not merge into one
    # category, and a causal pattern must stay lower-triangular
    pos = list(range(p.shape[-1]))
    text = np.array([f"{i}: {t}" for i, t in enumerate(labels)], dtype=object)
    custom = np.stack(np.broadcast_arrays(text[:, None], text[None, :]), -1)
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
                    x=pos,
                    y=pos,
                    customdata=custom,
                    colorscale="Blues",
                    zmin=0,
                    zmax=1,
                    showscale=i == 0 and j == 0,
                    hovertemplate="query %{customdata[0]}<br>key %{customdata[1]}"
                    "<br>%{z:.3f}<extra></extra>",
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
