"""Figures of the ladder: bits per byte (95% intervals) against parameters and against
training seconds; colour = family, marker = vocab size."""

from __future__ import annotations

import plotly.graph_objects as go

FAMILY_COLORS = {
    "unigram": "#7f7f7f",
    "n-gram": "#1f77b4",
    "dense HMM": "#d62728",
    "cloned HMM": "#ff7f0e",
    "blocked HMM": "#9467bd",
    "transformer": "#2ca02c",
}
VOCAB_MARKERS = {1024: "circle", 2048: "square", 4096: "diamond"}


def _traces(fig: go.Figure, rows: list[dict], x_key: str, x_label: str) -> None:
    for family, color in FAMILY_COLORS.items():
        for v in sorted({r["vocab_size"] for r in rows}):
            pts = [r for r in rows if r["family"] == family and r["vocab_size"] == v]
            pts = sorted((r for r in pts if r.get(x_key)), key=lambda r: r[x_key])
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r[x_key] for r in pts],
                    y=[r["bits_per_byte"] for r in pts],
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=[r["bpb_hi"] - r["bits_per_byte"] for r in pts],
                        arrayminus=[r["bits_per_byte"] - r["bpb_lo"] for r in pts],
                        thickness=1,
                    ),
                    mode="markers+lines",
                    marker=dict(color=color, symbol=VOCAB_MARKERS.get(v, "x"), size=9),
                    line=dict(color=color, width=1, dash="dot"),
                    name=f"{family}, V={v}",
                    text=[
                        f"{r['model']}<br>minus KN5: {r['diff_kn5']:+.4f} "
                        f"[{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}]"
                        if r.get("diff_kn5") is not None
                        else r["model"]
                        for r in pts
                    ],
                    hovertemplate="%{text}<br>%{x:,.0f} "
                    + x_label
                    + "<br>%{y:.4f} bits/byte<extra>V="
                    + str(v)
                    + "</extra>",
                )
            )


def ladder_figure(rows: list[dict]) -> go.Figure:
    """Bits per byte (story-bootstrap 95% intervals) against free parameters (log x)."""
    fig = go.Figure()
    _traces(fig, rows, "n_parameters", "parameters")
    fig.update_layout(
        title="bits per byte on the validation stories (95% story-bootstrap intervals)",
        xaxis_title="free parameters (one rule for every family)",
        yaxis_title="bits per byte",
        xaxis_type="log",
        template="plotly_white",
    )
    return fig


def seconds_figure(rows: list[dict]) -> go.Figure:
    """Bits per byte against training wall seconds on this machine (log x)."""
    rows = [r | {"train_seconds": r.get("training_seconds") or r.get("seconds")} for r in rows]
    fig = go.Figure()
    _traces(fig, rows, "train_seconds", "seconds")
    fig.update_layout(
        title="bits per byte against training time (wall seconds, mean over seeds)",
        xaxis_title="training seconds",
        yaxis_title="bits per byte",
        xaxis_type="log",
        template="plotly_white",
    )
    return fig


def curves_figure(curves: list[dict]) -> go.Figure:
    """EM curves of the ladder's HMM fits: dev (solid) and train (dotted) nats per token
    against iteration, one colour per model, one line per seed."""
    fig = go.Figure()
    models = list(dict.fromkeys(c["model"] for c in curves))
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
    for i, model in enumerate(models):
        color = palette[i % len(palette)]
        for seed in sorted({c["seed"] for c in curves if c["model"] == model}):
            pts = [c for c in curves if c["model"] == model and c["seed"] == seed]
            for key, dash, label in (
                ("dev_nats_per_token", "solid", "dev"),
                ("train_nats_per_token", "dot", "train"),
            ):
                fig.add_trace(
                    go.Scatter(
                        x=[c["iteration"] for c in pts],
                        y=[c[key] for c in pts],
                        mode="lines",
                        line=dict(color=color, dash=dash, width=1.5 if seed == 0 else 0.8),
                        name=f"{model} seed {seed} {label}",
                        legendgroup=model,
                        showlegend=seed == 0,
                    )
                )
    fig.update_layout(
        title="EM to dev convergence: nats per token by iteration (solid dev, dotted train)",
        xaxis_title="EM iteration",
        yaxis_title="nats per token",
        template="plotly_white",
    )
    return fig
