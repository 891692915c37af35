"""Training curves from a run's ``metrics.jsonl``."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def loss_curves_figure(metrics: list[dict], title: str = "training") -> go.Figure:
    """Training and dev loss (nats/token, left) and dev bits/byte (right); the validation score
    (read once, at the end, with the kept weights) is a single marker on each. Runs written
    before the dev split had validation scores at every evaluation: those are drawn as a curve."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (nats/token)", "bits/byte"))
    train = [m for m in metrics if "loss" in m]
    dev = [m for m in metrics if "dev_bits_per_byte" in m]
    valid = [m for m in metrics if "valid_bits_per_byte" in m]
    mode = "markers" if len(valid) == 1 else "lines+markers"
    # (records, key, name, mode, column)
    series = [
        (train, "loss", "train loss", "lines", 1),
        (dev, "dev_nats_per_token", "dev loss", "lines+markers", 1),
        (valid, "valid_nats_per_token", "validation loss", mode, 1),
        (dev, "dev_bits_per_byte", "dev bits/byte", "lines+markers", 2),
        (valid, "valid_bits_per_byte", "validation bits/byte", mode, 2),
    ]
    for records, key, name, m, col in series:
        if not records:
            continue
        # the validation score belongs to the kept weights: draw it at the kept step
        x = [r.get("best_step", r["step"]) if r.get("final") else r["step"] for r in records]
        y = [r[key] for r in records]
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode=m), row=1, col=col)
    stop = [m for m in metrics if "best_step" in m]
    if stop:
        fig.add_vline(x=stop[-1]["best_step"], line_dash="dot", line_color="grey")
        title += f" (stop: {stop[-1]['stop_reason']}; kept step {stop[-1]['best_step']})"
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, template="plotly_white")
    return fig
