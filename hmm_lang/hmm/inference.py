"""Exact inference for :class:`CategoricalHMM`: pure functions of tensors.

Forward and backward are scaled per step (Rabiner): alpha_hat_t = P(s_t | x_1..t) and
c_t = P(x_t | x_1..t-1), so log P(x) = sum_t log c_t. Batches are lanes (see
:mod:`hmm_lang.hmm.batching`): where ``start`` is True the recursion restarts from the initial
distribution. Tensors are stored time-major, (T, N, K), so each step reads contiguous rows.
Memory is O(T N K): never a T x K x K tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hmm_lang.hmm.batching import LaneBatch
from hmm_lang.hmm.model import CategoricalHMM


@dataclass
class HMMStats:
    """Expected sufficient statistics of EM; sums over sequences, so they add and all-reduce."""

    start: torch.Tensor  # (K,) expected initial-state counts
    trans: torch.Tensor  # (K, K) expected transition counts
    emit: torch.Tensor  # (K, V) expected emission counts
    log_likelihood: float  # nats, under the parameters that produced the statistics
    n_tokens: int
    n_sequences: int

    @classmethod
    def zeros(cls, k: int, v: int, device=None, dtype=torch.float64) -> HMMStats:
        z = dict(device=device, dtype=dtype)
        return cls(torch.zeros(k, **z), torch.zeros(k, k, **z), torch.zeros(k, v, **z), 0.0, 0, 0)

    def add_(self, other: HMMStats) -> HMMStats:
        self.start += other.start.to(self.start.dtype)
        self.trans += other.trans.to(self.trans.dtype)
        self.emit += other.emit.to(self.emit.dtype)
        self.log_likelihood += other.log_likelihood
        self.n_tokens += other.n_tokens
        self.n_sequences += other.n_sequences
        return self

    def scaled(self, factor: float) -> HMMStats:
        return HMMStats(
            self.start * factor,
            self.trans * factor,
            self.emit * factor,
            self.log_likelihood * factor,
            self.n_tokens,
            self.n_sequences,
        )


@dataclass
class ForwardPass:
    """A forward pass over one lane batch, time-major, on the model's device."""

    alpha: torch.Tensor  # (T, N, K) P(s_t | x_1..t)
    scale: torch.Tensor  # (T, N) c_t = P(x_t | x_1..t-1); 1 at padding
    b: torch.Tensor  # (T, N, K) P(x_t | s_t); 1 at padding
    tokens: torch.Tensor  # (T, N)
    restart: torch.Tensor  # (T, N) bool: no transition into step t (sequence start or padding)
    valid: torch.Tensor  # (T, N) bool

    @property
    def log_likelihood(self) -> float:
        return float(torch.log(self.scale.double()).sum())


def _time_major(hmm: CategoricalHMM, batch: LaneBatch):
    tokens = batch.tokens.t().contiguous().to(hmm.device)  # (T, N)
    valid = batch.valid.t().contiguous().to(hmm.device)
    restart = ~(valid & ~batch.start.t().to(hmm.device))
    return tokens, restart, valid


def forward(hmm: CategoricalHMM, batch: LaneBatch) -> ForwardPass:
    """Scaled forward pass over a lane batch, keeping every step's belief."""
    tokens, restart, valid = _time_major(hmm, batch)
    b = hmm.emit.t()[tokens]  # (T, N, K)
    b[~valid] = 1.0  # padding neither scales nor scores
    t_len, n, k = b.shape
    alpha = torch.empty_like(b)
    scale = torch.empty(t_len, n, dtype=b.dtype, device=b.device)
    start = hmm.start.expand(n, k)
    restart_k = restart.unsqueeze(-1)
    prev = start
    for t in range(t_len):
        pre = start if t == 0 else torch.where(restart_k[t], start, prev @ hmm.trans)
        a = pre * b[t]
        c = a.sum(-1)
        scale[t] = c
        prev = alpha[t] = a / c.unsqueeze(-1)
    return ForwardPass(alpha, scale, b, tokens, restart, valid)


def _backward(hmm: CategoricalHMM, fp: ForwardPass) -> torch.Tensor:
    """(T, N, K) scaled backward messages beta_hat, 1 at the last step of each sequence."""
    beta = torch.empty_like(fp.alpha)
    beta[-1] = 1.0
    trans_t = hmm.trans.t()
    cont = (~fp.restart).unsqueeze(-1)  # (T, N, 1): a transition t-1 -> t exists
    for t in range(fp.alpha.shape[0] - 1, 0, -1):
        w = fp.b[t] * beta[t] / fp.scale[t].unsqueeze(-1)
        beta[t - 1] = torch.where(cont[t], w @ trans_t, 1.0)
    return beta


def expected_counts(hmm: CategoricalHMM, batch: LaneBatch) -> HMMStats:
    """E-step on one batch: forward, backward and the expected counts of EM."""
    fp = forward(hmm, batch)
    beta = _backward(hmm, fp)
    k = hmm.n_states
    cont = (~fp.restart).unsqueeze(-1)
    # w_t = b_t beta_t / c_t where a transition enters t, else 0 (reuses b's memory)
    w = fp.b.mul_(beta).div_(fp.scale.unsqueeze(-1)).mul_(cont)
    # xi summed over time: A * sum_t alpha_{t-1}^T w_t, as one large matmul
    trans_counts = hmm.trans * (fp.alpha[:-1].reshape(-1, k).t() @ w[1:].reshape(-1, k))
    gamma = beta.mul_(fp.alpha).mul_(fp.valid.unsqueeze(-1))  # posteriors, 0 at padding
    emit_counts = torch.zeros(hmm.vocab_size, k, dtype=gamma.dtype, device=gamma.device)
    emit_counts.index_add_(0, fp.tokens.reshape(-1), gamma.reshape(-1, k))
    starts = fp.restart & fp.valid  # a restart at a real token is a sequence start
    return HMMStats(
        gamma[starts].sum(0),
        trans_counts,
        emit_counts.t(),
        float(torch.log(fp.scale.double()).sum()),
        int(fp.valid.sum()),
        int(starts.sum()),
    )


def posteriors(hmm: CategoricalHMM, batch: LaneBatch) -> torch.Tensor:
    """(N, T, K) P(s_t | whole sequence); zero at padding."""
    fp = forward(hmm, batch)
    beta = _backward(hmm, fp)
    return (fp.alpha * beta * fp.valid.unsqueeze(-1)).transpose(0, 1)


def filter_beliefs(hmm: CategoricalHMM, batch: LaneBatch) -> torch.Tensor:
    """(N, T, K) the forward belief P(s_t | x_1..t) at each position of each lane."""
    return forward(hmm, batch).alpha.transpose(0, 1)


@torch.no_grad()
def log_likelihood(hmm: CategoricalHMM, batches: Iterable[LaneBatch]) -> tuple[float, int]:
    """Total log-likelihood (nats) of every sequence in ``batches``, and the token count.

    Streams over time: memory is O(N K), whatever the lane length.
    """
    total, n_tokens = 0.0, 0
    emit_t = hmm.emit.t()
    for batch in batches:
        tokens, restart, valid = _time_major(hmm, batch)
        n = tokens.shape[1]
        start = hmm.start.expand(n, hmm.n_states)
        restart = restart.unsqueeze(-1)
        prev = start
        logc = torch.zeros(n, dtype=torch.float64, device=hmm.device)
        for t in range(tokens.shape[0]):
            pre = start if t == 0 else torch.where(restart[t], start, prev @ hmm.trans)
            a = pre * emit_t[tokens[t]]
            c = a.sum(-1)
            logc += torch.where(valid[t], torch.log(c.double()), 0.0)
            prev = a / c.unsqueeze(-1)
        total += float(logc.sum())
        n_tokens += int(valid.sum())
    return total, n_tokens


@torch.no_grad()
def viterbi(hmm: CategoricalHMM, sequence: Sequence[int] | np.ndarray) -> tuple[np.ndarray, float]:
    """The most probable state path of one sequence and its joint log-probability."""
    x = torch.as_tensor(np.asarray(sequence), dtype=torch.long, device=hmm.device)
    log_a = torch.log(hmm.trans.double())
    log_b = torch.log(hmm.emit.double()).t()[x]  # (T, K)
    delta = torch.log(hmm.start.double()) + log_b[0]
    back = torch.empty(len(x), hmm.n_states, dtype=torch.long, device=hmm.device)
    for t in range(1, len(x)):
        scores = delta.unsqueeze(1) + log_a  # (K_from, K_to)
        delta, back[t] = scores.max(0)
        delta = delta + log_b[t]
    path = np.empty(len(x), dtype=np.int64)
    best, path[-1] = delta.max(0)
    for t in range(len(x) - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path, float(best)


@torch.no_grad()
def sample(
    hmm: CategoricalHMM,
    n_sequences: int,
    max_len: int,
    eos_id: int | None = None,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Sample token sequences (and their state paths); a sequence ends after ``eos_id``."""
    g = torch.Generator(device=hmm.device).manual_seed(seed)
    states = torch.empty(n_sequences, max_len, dtype=torch.long, device=hmm.device)
    tokens = torch.empty_like(states)
    s = torch.multinomial(hmm.start.expand(n_sequences, -1), 1, generator=g)[:, 0]
    for t in range(max_len):
        if t > 0:
            s = torch.multinomial(hmm.trans[s], 1, generator=g)[:, 0]
        states[:, t] = s
        tokens[:, t] = torch.multinomial(hmm.emit[s], 1, generator=g)[:, 0]
    seqs, paths = [], []
    for row_x, row_s in zip(tokens.cpu().numpy(), states.cpu().numpy(), strict=True):
        end = max_len
        if eos_id is not None:
            hits = np.flatnonzero(row_x == eos_id)
            end = int(hits[0]) + 1 if len(hits) else max_len
        seqs.append(row_x[:end])
        paths.append(row_s[:end])
    return seqs, paths
