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
    # (records, key, name, mode, column)
    series = [
        (train, "loss", "train loss", "lines", 1),
        (valid, "valid_nats_per_token", "valid loss", "lines+markers", 1),
        (valid, "valid_bits_per_byte", "valid bits/byte", "lines+markers", 2),
    ]
    for records, key, name, mode, col in series:
        x, y = [m["step"] for m in records], [m[key] for m in records]
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode=mode), row=1, col=col)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, template="plotly_white")
    return fig
