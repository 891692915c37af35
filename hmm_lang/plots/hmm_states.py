"""Figures of a fitted HMM: transition graph, a story coloured by Viterbi state, state usage."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
]  # fmt: skip


def state_color(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def transition_graph_figure(
    edges: list[tuple[int, int, float]], n_states: int, state_names: list[str]
) -> go.Figure:
    """States on a circle; the strongest transitions as lines whose width is the probability."""
    angle = 2 * np.pi * np.arange(n_states) / n_states
    xy = np.stack([np.cos(angle), np.sin(angle)], 1)
    fig = go.Figure()
    top = max(p for _, _, p in edges) if edges else 1.0
    for i, j, p in edges:
        (x0, y0), (x1, y1) = xy[i], xy[j]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line=dict(width=1 + 6 * p / top, color="rgba(80,80,160,0.5)"),
                hoverinfo="skip",
                showlegend=False,
            )
        )
        fig.add_annotation(
            x=x1,
            y=y1,
            ax=x0,
            ay=y0,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=2,
            arrowwidth=1,
            arrowcolor="rgba(80,80,160,0.6)",
            text="",
        )
    used = sorted({i for i, _, _ in edges} | {j for _, j, _ in edges})
    fig.add_trace(
        go.Scatter(
            x=xy[used, 0],
            y=xy[used, 1],
            mode="markers+text",
            text=[str(k) for k in used],
            textposition="top center",
            marker=dict(size=14, color=[state_color(k) for k in used]),
            hovertext=[state_names[k] for k in used],
            hoverinfo="text",
            showlegend=False,
        )
    )
    fig.update_layout(
        title=f"strongest {len(edges)} transitions between states",
        template="plotly_white",
        width=760,
        height=760,
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return fig


def viterbi_story_figure(
    pieces: list[str], states: np.ndarray, state_names: list[str], per_line: int = 12
) -> go.Figure:
    """The story's tokens in reading order, each on a marker coloured by its Viterbi state."""
    n = len(pieces)
    x = np.arange(n) % per_line
    y = -(np.arange(n) // per_line)
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="markers+text",
            text=[p.replace("\n", "⏎") for p in pieces],
            marker=dict(
                symbol="square", size=34, color=[state_color(int(s)) for s in states], opacity=0.45
            ),
            hovertext=[
                f"{p!r}: state {int(s)}<br>{state_names[int(s)]}"
                for p, s in zip(pieces, states, strict=True)
            ],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title="a validation story coloured by Viterbi state",
        template="plotly_white",
        height=60 + 45 * (n // per_line + 1),
        width=1000,
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def state_usage_figure(usage: np.ndarray, entropy: float) -> go.Figure:
    order = np.argsort(-usage)
    fig = go.Figure(
        go.Bar(
            x=[str(k) for k in order],
            y=usage[order],
            marker_color=[state_color(int(k)) for k in order],
        )
    )
    k = len(usage)
    fig.update_layout(
        title=f"state usage: entropy {entropy:.2f} bits of a possible {np.log2(k):.2f} (K={k})",
        xaxis_title="state (by usage)",
        yaxis_title="share of tokens",
        template="plotly_white",
    )
    return fig
