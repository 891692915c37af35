"""The start of a cloned HMM: clones per token, the escape model, the first parameters.

Split from :mod:`hmm_lang.hmm.cloned` (the model and its inference): how many clones each token
gets (uniform or by frequency), where escaped mass goes (a Kneser-Ney bigram or the add-one
unigram), and the initial blocks (bigram counts spread over the clones with noise, so EM can
break the symmetry between clones).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.cloned import ClonedHMM, ClonedStats


def allocate_clones(counts: np.ndarray, total_states: int, max_clones: int) -> np.ndarray:
    """(V,) clones per token, proportional to sqrt(frequency), at least 1, at most
    ``max_clones``, summing to about ``total_states``."""
    v = len(counts)
    if total_states < v:
        raise HmmLangError(f"{total_states} states cannot give each of {v} tokens a clone")
    w = np.sqrt(counts.astype(np.float64)) + 1e-9
    lo, hi = 0.0, float(total_states) / w.min()
    for _ in range(60):  # bisect the scale so the clipped allocation meets the total
        mid = (lo + hi) / 2
        n = np.clip(np.round(w * mid), 1, max_clones)
        lo, hi = (mid, hi) if n.sum() < total_states else (lo, mid)
    return np.clip(np.round(w * lo), 1, max_clones).astype(np.int64)


ESCAPE_MODELS = ("kn-bigram", "unigram")


def escape_distributions(
    sequences: Sequence[np.ndarray], vocab_size: int, model: str = "kn-bigram", eos_id: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """(V, V) q_u(v), (V,) first-token q, and the escape model's parameter count.

    ``kn-bigram``: an interpolated modified Kneser-Ney bigram of ``sequences`` (context
    ``eos_id`` for the first token). ``unigram``: the add-one unigram in every row.
    """
    from hmm_lang.ngram import KneserNeyModel

    if model == "unigram":
        counts = np.bincount(np.concatenate(sequences).astype(np.int64), minlength=vocab_size)
        p = (counts + 1.0) / (counts.sum() + vocab_size)
        return np.broadcast_to(p, (vocab_size, vocab_size)), p, vocab_size - 1
    if model != "kn-bigram":
        raise HmmLangError(f"unknown escape model {model!r}; choose one of {ESCAPE_MODELS}")
    kn = KneserNeyModel(2, vocab_size, eos_id).fit(sequences)
    ids = np.arange(vocab_size, dtype=np.int64)
    keys = (ids[:, None] << kn.bits) | ids[None, :]  # (V, V) bigram keys u -> v
    table = np.exp(kn.log_probs_of_keys(keys.reshape(-1))).reshape(vocab_size, vocab_size)
    table /= table.sum(1, keepdims=True)  # exact row sums despite float rounding
    return table, table[eos_id].copy(), kn.n_parameters


def init_cloned_hmm(
    sequences: Sequence[np.ndarray],
    vocab_size: int,
    clones: int | np.ndarray,
    escape: float = 1e-2,
    seed: int = 0,
    noise: float = 5.0,
    escape_model: str = "kn-bigram",
    eos_id: int | None = None,
) -> ClonedHMM:
    """Blocks for every bigram in ``sequences``, filled with its count spread over the clones
    with multiplicative noise (1 + noise * U(0, 1)), then normalised.

    The noise breaks the clones' symmetry; too little leaves EM on the symmetric plateau (on
    TinyStories at 16 clones, noise 0.5 barely moved in 6 iterations, noise 5 escaped).
    ``eos_id`` (default: the last token of the first sequence) is the escape's context for a
    sequence's first token.
    """
    rng = np.random.default_rng(seed)
    n_per = np.full(vocab_size, clones) if np.isscalar(clones) else np.asarray(clones)
    if n_per.min() < 1:
        raise HmmLangError("every token needs at least one clone")
    n = int(n_per.max())
    prev = np.concatenate([s[:-1] for s in sequences]).astype(np.int64)
    cur = np.concatenate([s[1:] for s in sequences]).astype(np.int64)
    keys, pair_counts = np.unique(prev * vocab_size + cur, return_counts=True)
    firsts = np.bincount([int(s[0]) for s in sequences], minlength=vocab_size)
    eos = int(sequences[0][-1]) if eos_id is None else int(eos_id)
    q_next, q_first, n_esc = escape_distributions(sequences, vocab_size, escape_model, eos)
    model = ClonedHMM(
        torch.from_numpy(keys),
        torch.zeros(len(keys), n, n, dtype=torch.float32),
        torch.zeros(vocab_size, n, dtype=torch.float32),
        torch.from_numpy(np.ascontiguousarray(q_next)).float(),
        torch.from_numpy(q_first).float(),
        torch.from_numpy(n_per.astype(np.int64)),
        escape,
        n_esc,
    )
    blocks = pair_counts[:, None, None] * (1 + noise * rng.random((len(keys), n, n)))
    start = (firsts + 1e-3)[:, None] * (1 + noise * rng.random((vocab_size, n)))
    stats = ClonedStats(torch.from_numpy(blocks), torch.from_numpy(start), 0.0, 0)
    return model.m_step(stats)
