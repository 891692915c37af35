"""Training curves from a run's ``metrics.jsonl``."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def loss_curves_figure(metrics: list[dict], title: str = "training") -> go.Figure:
    """Training loss and validation loss (nats/token, left) and validation bits/byte (right)."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("loss (nats/token)", "validation bits/byte")
    )
    train = [m for m in metrics if "loss" in m]
    valid = [m for m in metrics if "valid_bits_per_byte" in m]
    fig.add_trace(
        go.Scatter(x=[m["step"] for m in train], y=[m["loss"] for m in train], name="train loss"),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=[m["step"] for m in valid],
            y=[m["valid_nats_per_token"] for m in valid],
            name="valid loss",
            mode="lines+markers",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=[m["step"] for m in valid],
            y=[m["valid_bits_per_byte"] for m in valid],
            name="valid bits/byte",
            mode="lines+markers",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, template="plotly_white")
    return fig
