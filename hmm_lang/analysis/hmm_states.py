"""HMM anatomy: what each state emits, where it goes, how much it is used; predictive sampling."""

from __future__ import annotations

import numpy as np
import torch

from hmm_lang.hmm.batching import pack_lanes
from hmm_lang.hmm.inference import posteriors
from hmm_lang.hmm.model import CategoricalHMM


def top_tokens(hmm: CategoricalHMM, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(K, k) ids and probabilities of each state's most probable tokens."""
    p, ids = torch.topk(hmm.emit.double(), k, dim=1)
    return ids.numpy(), p.numpy()


def strongest_transitions(
    hmm: CategoricalHMM, n: int = 40, self_loops: bool = False
) -> list[tuple[int, int, float]]:
    """The n largest transition probabilities (i, j, P(j | i))."""
    a = hmm.trans.double().clone()
    if not self_loops:
        a.fill_diagonal_(0.0)
    vals, idx = torch.topk(a.flatten(), min(n, a.numel()))
    k = hmm.n_states
    return [(int(i) // k, int(i) % k, float(v)) for v, i in zip(vals, idx, strict=True)]


def state_usage(hmm: CategoricalHMM, sequences: list[np.ndarray]) -> np.ndarray:
    """(K,) share of tokens attributed to each state (posterior mass over the sequences)."""
    total = torch.zeros(hmm.n_states, dtype=torch.float64)
    for batch in pack_lanes(sequences):
        total += posteriors(hmm, batch).double().sum((0, 1))
    return (total / total.sum()).numpy()


def entropy_bits(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


@torch.no_grad()
def sample_predictive(
    hmm: CategoricalHMM,
    n_sequences: int,
    max_len: int,
    temperature: float = 1.0,
    eos_id: int | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """Sample from the HMM as from a language model: each token from the predictive
    distribution P(x_t | x_<t) ** (1 / temperature), then the belief is updated on that token
    (so temperature means what it means for the transformer)."""
    g = torch.Generator().manual_seed(seed)
    a, b = hmm.trans.double(), hmm.emit.double()
    belief = hmm.start.double().expand(n_sequences, -1).clone()  # P(s_1)
    out = torch.empty(n_sequences, max_len, dtype=torch.long)
    for t in range(max_len):
        p = belief @ b  # (N, V) P(x_t | x_<t)
        if temperature != 1.0:
            p = p.clamp(min=1e-300) ** (1.0 / temperature)
        x = torch.multinomial(p / p.sum(-1, keepdim=True), 1, generator=g)[:, 0]
        out[:, t] = x
        post = belief * b[:, x].T  # P(s_t | x_<=t), unnormalised
        belief = (post / post.sum(-1, keepdim=True)) @ a
    seqs = []
    for row in out.numpy():
        end = max_len
        if eos_id is not None and (hits := np.flatnonzero(row == eos_id)).size:
            end = int(hits[0]) + 1
        seqs.append(row[:end])
    return seqs
