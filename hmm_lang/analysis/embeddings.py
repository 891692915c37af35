"""Embedding geometry: cosine similarity, token orderings, coarse-grained block matrices.

Pure functions of tensors and arrays; figures live in :mod:`hmm_lang.plots.embeddings`.
"""

from __future__ import annotations

import numpy as np
import torch

from hmm_lang.errors import HmmLangError


def cosine_similarity_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """(V, V) cosine similarity of the rows of ``vectors`` (V, d); zero rows give 0."""
    v = vectors.detach().float()
    v = v / v.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return v @ v.T


def embedding_vectors(model, which: str = "embed") -> torch.Tensor:
    """(V, d_model): rows of W_E (``embed``) or columns of W_U (``unembed``)."""
    if which == "embed":
        return model.model.W_E.detach()
    if which == "unembed":
        return model.model.W_U.detach().T
    raise HmmLangError(f"unknown embedding {which!r}: embed or unembed")


def order_by_frequency(counts: np.ndarray) -> np.ndarray:
    """Token ids, most frequent first (ties by id)."""
    return np.argsort(-np.asarray(counts), kind="stable")


def order_by_clustering(vectors: torch.Tensor, method: str = "average") -> np.ndarray:
    """Leaf order of a hierarchical clustering of the rows (cosine distance)."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    v = vectors.detach().double().numpy()
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return leaves_list(linkage(v, method=method, metric="cosine"))


def order_by_groups(groups: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
    """Token ids sorted by group label; inside a group, in the order ``within`` (default id)."""
    groups = np.asarray(groups)
    rank = np.empty(len(groups), dtype=np.int64)
    rank[within if within is not None else np.arange(len(groups))] = np.arange(len(groups))
    return np.lexsort((rank, groups))


def equal_blocks(n: int, k: int) -> np.ndarray:
    """(n,) labels of k contiguous, nearly equal blocks of 0..n-1 (the notebook's 8x8)."""
    if not 1 <= k <= n:
        raise HmmLangError(f"cannot cut {n} tokens into {k} blocks")
    return (np.arange(n) * k) // n


def frequency_bands(counts: np.ndarray, k: int) -> np.ndarray:
    """(V,) label of each token's frequency band: k bands of equal size, 0 the most frequent."""
    order = order_by_frequency(counts)
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = equal_blocks(len(order), k)
    return labels


def coarse_grain(matrix: torch.Tensor | np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(k, k) mean of ``matrix`` over each pair of groups, leaving out the diagonal entries
    (i, i) so that self-similarity (1 for cosine) does not inflate the diagonal blocks.

    ``groups``: (n,) integer labels 0..k-1. A block with no off-diagonal entries is NaN.
    """
    m = torch.as_tensor(matrix, dtype=torch.float64)
    g = torch.as_tensor(np.asarray(groups), dtype=torch.long)
    k = int(g.max()) + 1
    onehot = torch.zeros(len(g), k, dtype=torch.float64)
    onehot[torch.arange(len(g)), g] = 1.0
    sums = onehot.T @ m @ onehot  # (k, k) block sums
    sizes = onehot.sum(0)
    counts = torch.outer(sizes, sizes)
    # remove the diagonal of the full matrix from the diagonal blocks
    sums -= torch.diag(torch.zeros(k, dtype=torch.float64).index_add_(0, g, torch.diagonal(m)))
    counts -= torch.diag(sizes)
    out = sums / counts
    out[counts == 0] = float("nan")
    return out.numpy()


def token_labels(tokenizer, ids=None) -> list[str]:
    """``"id:piece"`` for each token id (unique, so plotly's categorical axes keep them apart)."""
    n = len(tokenizer)
    ids = range(n) if ids is None else ids
    return [f"{i}:{tokenizer.decode([int(i)])!r}"[:40] for i in ids]
