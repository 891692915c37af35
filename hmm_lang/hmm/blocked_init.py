"""The start of a blocked-emission HMM.

Each seen cluster bigram's count is spread over its (n x n) block and each token's count over its
cluster's n states, with multiplicative noise (1 + noise * U(0, 1)) that breaks the symmetry
between a cluster's states; one M-step turns the counts into the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.blocked import BlockedHMM, BlockedStats, cluster_layout
from hmm_lang.hmm.cloned_init import escape_distributions

BLOCK_NOISE = 1.0  # start noise: 1 + noise * U(0, 1) on every count


def init_blocked_hmm(
    sequences: Sequence[np.ndarray],
    vocab_size: int,
    cluster: np.ndarray,
    block_size: int,
    escape: float = 1e-2,
    seed: int = 0,
    noise: float = BLOCK_NOISE,
    escape_model: str = "kn-bigram",
    eos_id: int | None = None,
) -> BlockedHMM:
    """A blocked HMM over ``cluster`` (the (V,) cluster of each token) with ``block_size``
    states per cluster, started from the class-bigram counts of ``sequences`` (see module)."""
    if block_size < 1:
        raise HmmLangError(f"each cluster needs at least one state, got {block_size}")
    cluster = np.asarray(cluster, dtype=np.int64)
    m = int(cluster.max()) + 1
    pos, sizes = cluster_layout(cluster, m)
    rng = np.random.default_rng(seed)
    cl_seqs = [cluster[s] for s in sequences]
    prev = np.concatenate([s[:-1] for s in cl_seqs])
    cur = np.concatenate([s[1:] for s in cl_seqs])
    keys, pair_counts = np.unique(prev * m + cur, return_counts=True)
    firsts = np.bincount([int(s[0]) for s in cl_seqs], minlength=m)
    eos = int(sequences[0][-1]) if eos_id is None else int(eos_id)
    q_next, q_first, n_esc = escape_distributions(cl_seqs, m, escape_model, int(cluster[eos]))
    n, width = block_size, int(sizes.max())
    unigram = np.bincount(np.concatenate(sequences).astype(np.int64), minlength=vocab_size)
    emit = np.zeros((m, width))
    emit[cluster, pos] = unigram + 0.1
    model = BlockedHMM(
        torch.from_numpy(cluster),
        torch.from_numpy(keys),
        torch.zeros(len(keys), n, n),
        torch.zeros(m, n),
        torch.zeros(m, n, width),
        torch.from_numpy(np.ascontiguousarray(q_next)).float(),
        torch.from_numpy(q_first).float(),
        escape,
        n_esc,
    )
    blocks = pair_counts[:, None, None] * (1 + noise * rng.random((len(keys), n, n)))
    start = (firsts + 1e-3)[:, None] * (1 + noise * rng.random((m, n)))
    em = emit[:, None, :] * (1 + noise * rng.random((m, n, width)))
    stats = BlockedStats(
        torch.from_numpy(blocks), torch.from_numpy(start), torch.from_numpy(em), 0.0, 0
    )
    return model.m_step(stats)
