"""Rank-frequency (Zipf) figures across tokenizers."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from hmm_lang.stats import TokenStats


def rank_frequency_figure(
    stats: dict[int, TokenStats], reference_vocab: int = 4096, log_x: bool = False
) -> go.Figure:
    """Token frequency against rank, one trace per tokenizer.

    Ranks are rescaled by ``reference_vocab / V`` so that tokenizers of different vocab sizes
    span the same x range; the y axis is logarithmic. Hover shows rank, token id, token text
    and frequency.
    """
    fig = go.Figure()
    for v, s in sorted(stats.items()):
        used = s.sorted_counts > 0
        ids = s.order[used]
        counts = s.sorted_counts[used]
        ranks = np.arange(1, len(ids) + 1)
        custom = np.stack(
            [ranks, ids, np.array([repr(s.pieces[i]) for i in ids], dtype=object)], axis=1
        )
        fig.add_trace(
            go.Scattergl(
                x=ranks * (reference_vocab / v),
                y=counts / s.n_tokens,
                mode="lines",
                name=f"V={v} (Zipf s={s.zipf_exponent:.2f})",
                customdata=custom,
                hovertemplate=(
                    "rank %{customdata[0]}<br>id %{customdata[1]}<br>token %{customdata[2]}"
                    "<br>frequency %{y:.3g}<extra>V=" + str(v) + "</extra>"
                ),
            )
        )
    fig.update_layout(
        title="Token rank-frequency across tokenizers",
        xaxis_title=f"rank x {reference_vocab}/V",
        yaxis_title="frequency (fraction of tokens)",
        yaxis_type="log",
        xaxis_type="log" if log_x else "linear",
        template="plotly_white",
    )
    return fig
