"""Token clusterings for blocked HMMs and class-bigram starts.

``context``: weighted k-means of each token's left and right context distributions (Hellinger
features over the most frequent context tokens), as the class-bigram start uses.

``exchange``: the exchange algorithm (Kneser & Ney 1993; Martin, Liermann & Ney 1998), which
greedily moves one token at a time to the cluster that most raises the class-bigram
log-likelihood, Brown clustering's objective:
    L = sum_{a,b} f(N(a,b)) - sum_a f(N(a,.)) - sum_b f(N(.,b)) + const,   f(x) = x log x,
with N(a, b) the count of cluster bigrams. Each move is evaluated for every target cluster at
once in O(M * |contexts of the token|); it starts from the ``context`` clustering, so it can only
improve the objective. It is not Brown's agglomerative merge order (which needs O(V M^2) with
a window), but it optimises the same objective.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hmm_lang.errors import HmmLangError

log = logging.getLogger(__name__)

CLUSTERINGS = ("exchange", "context")


def bigram_counts(sequences: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """(V, V) counts of adjacent pairs within sequences, counted ``chunk`` sequences at a time
    (the pair keys of the whole corpus are never held at once)."""
    chunk = 1 << 14
    flat = np.zeros(vocab_size * vocab_size, dtype=np.int64)
    for a in range(0, len(sequences), chunk):
        part = sequences[a : a + chunk]
        prev = np.concatenate([s[:-1] for s in part]).astype(np.int64)
        nxt = np.concatenate([s[1:] for s in part]).astype(np.int64)
        flat += np.bincount(prev * vocab_size + nxt, minlength=vocab_size * vocab_size)
    return flat.reshape(vocab_size, vocab_size).astype(np.float64)


def kmeans(
    x: torch.Tensor, k: int, weights: torch.Tensor, iters: int = 25, seed: int = 0
) -> torch.Tensor:
    """Weighted k-means (k-means++ seeding); returns the (n,) cluster of each row of x."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    centers = torch.empty(k, x.shape[1], dtype=x.dtype)
    centers[0] = x[torch.multinomial(weights, 1, generator=g)]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for j in range(1, k):
        p = weights * d2
        idx = torch.multinomial(p if p.sum() > 0 else weights, 1, generator=g)
        centers[j] = x[idx]
        d2 = torch.minimum(d2, ((x - centers[j]) ** 2).sum(1))
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        dist = torch.cdist(x, centers)
        new = dist.argmin(1)
        if torch.equal(new, assign) and _ > 0:
            break
        assign = new
        sums = torch.zeros_like(centers).index_add_(0, assign, x * weights[:, None])
        mass = torch.zeros(k, dtype=x.dtype).index_add_(0, assign, weights)
        keep = mass > 0
        centers[keep] = sums[keep] / mass[keep, None]
    return assign


def _pairs(sequences: Sequence[np.ndarray], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    prev = np.concatenate([s[:-1] for s in sequences]).astype(np.int64)
    cur = np.concatenate([s[1:] for s in sequences]).astype(np.int64)
    return np.unique(prev * vocab_size + cur, return_counts=True)


def _fill_empty(assign: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Give every empty cluster one token: the rarest token of the largest cluster."""
    assign = assign.copy()
    for c in np.flatnonzero(np.bincount(assign, minlength=k) == 0):
        big = np.argmax(np.bincount(assign, minlength=k))
        members = np.flatnonzero(assign == big)
        assign[members[np.argmin(counts[members])]] = c
    return assign


def context_features(sequences: Sequence[np.ndarray], vocab_size: int, context: int = 256):
    """Hellinger features of each used token's left and right context distributions over the
    ``context`` most frequent tokens: (features (U, 2C) float32, used ids (U,), unigram
    counts (V,), bigram counts (V, V))."""
    pairs = bigram_counts(sequences, vocab_size)
    unigram = np.bincount(np.concatenate(sequences).astype(np.int64), minlength=vocab_size)
    used = np.flatnonzero(unigram)
    top = np.argsort(-unigram)[: min(context, len(used))]
    right = pairs[:, top] / np.maximum(pairs.sum(1, keepdims=True), 1)
    left = pairs[top, :].T / np.maximum(pairs.sum(0)[:, None], 1)
    feats = torch.from_numpy(np.sqrt(np.concatenate([left, right], 1))[used]).float()
    return feats, used, unigram, pairs


def context_clusters(
    sequences: Sequence[np.ndarray], vocab_size: int, k: int, seed: int = 0, context: int = 256
) -> np.ndarray:
    """(V,) cluster of every token: k-means of context distributions; tokens unseen in
    ``sequences`` are dealt round-robin; no cluster is empty."""
    if not 1 <= k <= vocab_size:
        raise HmmLangError(f"--clusters must be in [1, {vocab_size}] (the vocab), got {k}")
    feats, used, unigram, _ = context_features(sequences, vocab_size, context)
    assign = np.arange(vocab_size) % k
    n = min(k, len(used))
    assign[used] = kmeans(feats, n, torch.from_numpy(np.sqrt(unigram[used])).float(), seed=seed)
    return _fill_empty(assign.astype(np.int64), unigram, k)


def _f(x: np.ndarray) -> np.ndarray:
    return x * np.log(np.maximum(x, 1e-300))


def class_bigram_objective(sequences: Sequence[np.ndarray], cluster: np.ndarray, k: int) -> float:
    """Brown's objective L (see the module docstring) in nats, up to the word-only constant."""
    keys, cnt = _pairs(sequences, len(cluster))
    v = len(cluster)
    n = np.zeros((k, k))
    np.add.at(n, (cluster[keys // v], cluster[keys % v]), cnt)
    return float(_f(n).sum() - _f(n.sum(1)).sum() - _f(n.sum(0)).sum())


def exchange_clusters(
    sequences: Sequence[np.ndarray],
    vocab_size: int,
    k: int,
    seed: int = 0,
    max_passes: int = 20,
    min_moved: float = 1e-3,
    progress: bool = False,
) -> np.ndarray:
    """(V,) clusters by the exchange algorithm from the ``context`` clustering; stops when a
    pass moves fewer than ``min_moved`` of the tokens (or after ``max_passes``)."""
    assign = context_clusters(sequences, vocab_size, k, seed)
    keys, cnt = _pairs(sequences, vocab_size)
    cnt = cnt.astype(np.float64)
    prev, cur = keys // vocab_size, keys % vocab_size
    # successors of each token (rows sorted by prev) and predecessors (sorted by cur)
    s_ptr = np.searchsorted(prev, np.arange(vocab_size + 1))
    order = np.argsort(cur, kind="stable")
    p_ptr = np.searchsorted(cur[order], np.arange(vocab_size + 1))
    p_src, p_cnt = prev[order], cnt[order]
    self_count = np.zeros(vocab_size)
    diag = prev == cur
    self_count[prev[diag]] = cnt[diag]
    n = np.zeros((k, k))
    np.add.at(n, (assign[prev], assign[cur]), cnt)
    nl, nr = n.sum(1), n.sum(0)
    size = np.bincount(assign, minlength=k)
    freq = np.bincount(np.concatenate(sequences).astype(np.int64), minlength=vocab_size)
    words = [w for w in np.argsort(-freq, kind="stable") if freq[w] > 0]
    for p in tqdm(range(max_passes), desc=f"exchange M={k}", disable=not progress, leave=False):
        moved = 0
        for w in words:
            a = assign[w]
            if size[a] == 1:
                continue
            s = self_count[w]
            r = np.bincount(assign[cur[s_ptr[w] : s_ptr[w + 1]]], cnt[s_ptr[w] : s_ptr[w + 1]], k)
            l_ = np.bincount(
                assign[p_src[p_ptr[w] : p_ptr[w + 1]]], p_cnt[p_ptr[w] : p_ptr[w + 1]], k
            )
            wl, wr = r.sum(), l_.sum()
            # take w out of a
            n[a, :] -= r
            n[:, a] -= l_
            n[a, a] += s
            nl[a] -= wl
            nr[a] -= wr
            r[a] -= s
            l_[a] -= s
            rc, lc = np.flatnonzero(r), np.flatnonzero(l_)
            row = _f(n[:, rc] + r[rc]) - _f(n[:, rc])  # (k, |rc|): row b gains r
            col = _f(n[lc, :] + l_[lc, None]) - _f(n[lc, :])  # (|lc|, k): column b gains l
            gain = row.sum(1) + col.sum(0)
            # the (b, b) cell was counted in both sums with only one of its gains; redo it
            d = np.diagonal(n)
            gain += -_f(d + r) - _f(d + l_) + 2 * _f(d) + _f(d + r + l_ + s) - _f(d)
            gain -= _f(nl + wl) - _f(nl) + _f(nr + wr) - _f(nr)
            b = int(np.argmax(gain))
            if gain[b] <= gain[a] + 1e-9:
                b = a
            n[b, :] += r
            n[:, b] += l_
            n[b, b] += s
            nl[b] += wl
            nr[b] += wr
            if b != a:
                assign[w] = b
                size[a] -= 1
                size[b] += 1
                moved += 1
        objective = float(_f(n).sum() - _f(nl).sum() - _f(nr).sum())
        log.info("exchange pass %d: %d tokens moved, objective %.1f nats", p, moved, objective)
        if moved < min_moved * len(words):
            break
    return assign


def token_clusters(
    method: str, sequences: Sequence[np.ndarray], vocab_size: int, k: int, seed: int = 0
) -> np.ndarray:
    """(V,) clusters by ``method``, one of :data:`CLUSTERINGS`."""
    if method == "exchange":
        return exchange_clusters(sequences, vocab_size, k, seed)
    if method == "context":
        return context_clusters(sequences, vocab_size, k, seed)
    raise HmmLangError(f"unknown clustering {method!r}; choose one of {', '.join(CLUSTERINGS)}")
