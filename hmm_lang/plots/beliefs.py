"""Figures of the belief-state probes: R^2 above the token baseline per layer, and geometry."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

CONTROL_STYLE = {
    "trained": "solid",
    "random_init": "dash",
    "token_shuffle": "dot",
}


def belief_r2_figure(rows: list[dict], title: str = "") -> go.Figure:
    """One panel per target: R^2 above ``token_baseline`` (paired, story-bootstrap 95%
    interval) for each feature set, trained against its controls."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig = make_subplots(rows=1, cols=len(targets), subplot_titles=targets, shared_yaxes=True)
    for j, t in enumerate(targets, 1):
        for control, dash in CONTROL_STYLE.items():
            pts = [r for r in rows if r["target"] == t and r["control"] == control]
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r["features"] for r in pts],
                    y=[r["above_token"] for r in pts],
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=[r["above_hi"] - r["above_token"] for r in pts],
                        arrayminus=[r["above_token"] - r["above_lo"] for r in pts],
                    ),
                    mode="lines+markers",
                    line=dict(dash=dash),
                    name=control,
                    legendgroup=control,
                    showlegend=j == 1,
                ),
                row=1,
                col=j,
            )
        fig.add_hline(y=0, line_color="grey", row=1, col=j)
    fig.update_yaxes(title_text="R^2 minus token baseline", row=1, col=1)
    fig.update_layout(
        title=title
        or "Belief targets from the residual stream: out-of-fold R^2 above what "
        "the current token explains (95% story-bootstrap intervals)",
        template="plotly_white",
        height=450,
        width=max(500, 380 * len(targets)),
    )
    return fig


def belief_geometry_figure(
    truth: np.ndarray,
    preds: dict[str, np.ndarray],
    colour: np.ndarray,
    max_points: int = 3000,
    seed: int = 0,
    title: str = "",
) -> go.Figure:
    """PCA (2 components of ``truth``) of the true targets beside the same projection of each
    probe's predictions, coloured by ``colour`` (e.g. the most likely state)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(truth), size=min(max_points, len(truth)), replace=False)
    mu = truth.mean(0)
    _, _, vt = np.linalg.svd(truth[idx] - mu, full_matrices=False)
    pcs = vt[:2].T
    panels = {"true": truth, **preds}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels))
    for j, y in enumerate(panels.values(), 1):
        z = (np.asarray(y, dtype=np.float64)[idx] - mu) @ pcs
        fig.add_trace(
            go.Scattergl(
                x=z[:, 0],
                y=z[:, 1],
                mode="markers",
                marker=dict(size=3, color=colour[idx], colorscale="Turbo", opacity=0.6),
                showlegend=False,
                hovertext=[f"state {c}" for c in colour[idx]],
            ),
            row=1,
            col=j,
        )
    fig.update_layout(
        title=title or "PCA of the true targets and of each layer's probe predictions",
        template="plotly_white",
        height=380,
        width=max(500, 300 * len(panels)),
    )
    return fig
