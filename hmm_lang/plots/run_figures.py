"""The figures of one transformer run: analysis results (``hmm_lang.analysis``) drawn with the
figure builders of this package; what notebooks 03-05 and `hmm-lang analyze` draw, saved into
the run's ``figures/``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch

from hmm_lang.analysis.circuits import attention_patterns, circuits, head_weights
from hmm_lang.analysis.embeddings import (
    coarse_grain,
    cosine_similarity_matrix,
    embedding_vectors,
    equal_blocks,
    frequency_bands,
    order_by_clustering,
    order_by_frequency,
    order_by_groups,
    token_labels,
)
from hmm_lang.analysis.residual import collect_residuals
from hmm_lang.errors import HmmLangError
from hmm_lang.plots.circuits import attention_patterns_figure, circuit_figure, head_weights_figure
from hmm_lang.plots.embeddings import coarse_grained_figure
from hmm_lang.plots.residual import explained_variance_figure, pca_scatter_figure
from hmm_lang.pretokenize import TokenStream
from hmm_lang.tokenizer import BOS

log = logging.getLogger(__name__)

ORDERINGS = ("id", "frequency", "cluster", "groups")


def token_order(
    ordering: str, vectors: torch.Tensor, counts: np.ndarray | None, groups=None
) -> np.ndarray:
    if ordering == "id":
        return np.arange(vectors.shape[0])
    if ordering == "frequency":
        if counts is None:
            raise HmmLangError("ordering by frequency needs token counts")
        return order_by_frequency(counts)
    if ordering == "cluster":
        return order_by_clustering(vectors)
    if ordering == "groups":
        if groups is None:
            raise HmmLangError("ordering by groups needs a group label per token")
        return order_by_groups(groups, order_by_frequency(counts) if counts is not None else None)
    raise HmmLangError(f"unknown ordering {ordering!r}; choose one of {', '.join(ORDERINGS)}")


def similarity_figure(
    model,
    tokenizer,
    which: str = "embed",
    ordering: str = "id",
    k: int = 8,
    counts: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    max_tokens: int | None = None,
) -> go.Figure:
    """The similarity of W_E rows (or W_U columns), ordered, beside its k x k coarse-graining.

    Blocks are contiguous in the chosen order (equal id blocks, frequency bands...) or, with
    ``ordering="groups"``, the groups themselves. ``max_tokens`` keeps the most frequent
    tokens (the first ids when no counts are given), then orders them; the title says which.
    Matrices above 512 tokens are drawn mean-pooled (see :func:`bin_matrix`).
    """
    vectors = embedding_vectors(model, which)
    shown = f"all {vectors.shape[0]} tokens"
    if max_tokens is not None and max_tokens < vectors.shape[0]:
        if counts is not None:
            keep = order_by_frequency(counts)[:max_tokens]
            shown = f"the {max_tokens} most frequent tokens"
        else:
            keep = np.arange(max_tokens)
            shown = f"token ids 0-{max_tokens - 1}"
        if ordering == "id":
            order = np.sort(keep)
        else:
            sub = token_order(
                ordering,
                vectors[torch.as_tensor(keep)],
                counts[keep] if counts is not None else None,
                np.asarray(groups)[keep] if groups is not None else None,
            )
            order = keep[sub]
    else:
        order = token_order(ordering, vectors, counts, groups)
    sim = cosine_similarity_matrix(vectors[torch.as_tensor(order)]).numpy()
    if ordering == "groups":
        labels_of = np.asarray(groups)[order]
        _, block = np.unique(labels_of, return_inverse=True)
        names = [f"group {g}" for g in np.unique(labels_of)]
    else:
        block = equal_blocks(len(order), k)
        names = None
    blocks = coarse_grain(sim, block)
    what = "W_E rows" if which == "embed" else "W_U columns"
    title = f"{what}: cosine similarity of {shown}, ordered by {ordering}"
    return coarse_grained_figure(sim, token_labels(tokenizer, order), blocks, names, title)


def circuit_figures(
    model, tokenizer, counts: np.ndarray, layer: int, head: int, top_n: int = 50
) -> dict[str, go.Figure]:
    top = order_by_frequency(counts)[:top_n]
    labels = token_labels(tokenizer, top)
    c = circuits(model, layer, head, top)
    tag = f"L{layer}H{head}"
    return {
        f"weights_{tag}": head_weights_figure(
            head_weights(model, layer, head), f"{tag}: W_Q, W_K, W_V, W_O"
        ),
        f"qk_{tag}": circuit_figure(
            c["QK"],
            labels,
            f"{tag} QK circuit W_E W_Q W_K^T W_E^T (top {top_n} tokens)",
            "query",
            "key",
        ),
        f"ov_{tag}": circuit_figure(
            c["OV"],
            labels,
            f"{tag} OV circuit W_E W_V W_O W_U (top {top_n} tokens)",
            "attended token",
            "output logit",
        ),
    }


def patterns_figure(model, tokenizer, story: np.ndarray, max_len: int = 48) -> go.Figure:
    bos = tokenizer.convert_tokens_to_ids(BOS)
    ids = np.concatenate([[bos], story[: max_len - 1]]).astype(np.int64)
    pats = attention_patterns(model, torch.as_tensor(ids))
    return attention_patterns_figure(
        pats, token_labels(tokenizer, ids), "attention patterns on a validation story"
    )


def pca_figures(
    model,
    tokenizer,
    valid: TokenStream,
    counts: np.ndarray,
    n_tokens: int = 100_000,
    labels: dict | None = None,
) -> dict[str, go.Figure]:
    """Explained variance per hook, and 2-D / 3-D scatter of the final residual stream coloured by
    log frequency and by position (and by each array in ``labels``, token id -> label)."""
    bos = tokenizer.convert_tokens_to_ids(BOS)
    col = collect_residuals(model, valid, bos, n_tokens=n_tokens)
    results = {h: col.pca(h) for h in col.hooks}
    figs = {"pca_explained_variance": explained_variance_figure(results)}
    hook = col.hooks[-1]
    coords = results[hook].project(col.sample[hook], 3)
    hover = _contexts(tokenizer, valid, col)
    colours = {
        "log10 frequency": np.log10(counts[col.sample_tokens] + 1),
        "position": col.sample_positions,
    }
    for name, lab in (labels or {}).items():
        colours[name] = np.asarray(lab)[col.sample_tokens]
    for name, c in colours.items():
        key = name.replace(" ", "_")
        figs[f"pca2d_{key}"] = pca_scatter_figure(
            coords[:, :2], c, hover, name, f"{hook}: PC1-PC2 by {name}"
        )
        figs[f"pca3d_{key}"] = pca_scatter_figure(
            coords, c, hover, name, f"{hook}: PC1-PC3 by {name}"
        )
    return figs


def _contexts(tokenizer, valid: TokenStream, col, width: int = 6) -> list[str]:
    out = []
    for story, pos in zip(col.sample_story, col.sample_positions, strict=True):
        ids = valid.story(int(story))
        cur = int(pos) - 1  # position 0 is <s>
        if cur < 0:
            out.append("<s>")
            continue
        before = tokenizer.decode(ids[max(0, cur - width) : cur].tolist())
        out.append(f"…{before}[{tokenizer.decode([int(ids[cur])])}]".replace("\n", "⏎"))
    return out


def save_all(figs: dict[str, go.Figure], run_dir: Path, png: bool = True) -> list[Path]:
    from hmm_lang.plots.export import save_figure

    paths = []
    for name, fig in figs.items():
        paths += save_figure(fig, Path(run_dir) / "figures", name, png=png)
    return paths


__all__ = [
    "ORDERINGS",
    "circuit_figures",
    "frequency_bands",
    "patterns_figure",
    "pca_figures",
    "save_all",
    "similarity_figure",
]
