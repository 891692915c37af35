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

from hmm_lang.hmm.batching import LaneBatch, story_totals
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

    alpha: torch.Tensor  # (T, N, K) P(s_t | x_1..t); padding rows hold the start distribution
    scale: torch.Tensor  # (T, N) c_t = P(x_t | x_1..t-1); 1 at padding
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


def _rows(mask: torch.Tensor) -> list[torch.Tensor | None]:
    """Per step, the lanes where ``mask`` (T, N) is True (None where it is nowhere)."""
    counts = mask.sum(1).tolist()
    lanes = torch.split(torch.nonzero(mask, as_tuple=True)[1], counts)
    return [idx if c else None for idx, c in zip(lanes, counts, strict=True)]


def _emission_rows(emit_t: torch.Tensor, tokens: torch.Tensor, pad, out: torch.Tensor):
    """out = P(x_t | s_t = k) for each lane, 1 at padding (so padding neither scales nor scores)."""
    torch.index_select(emit_t, 0, tokens, out=out)
    if pad is not None:
        out[pad] = 1.0
    return out


def forward(hmm: CategoricalHMM, batch: LaneBatch) -> ForwardPass:
    """Scaled forward pass over a lane batch, keeping every step's belief."""
    tokens, restart, valid = _time_major(hmm, batch)
    t_len, n = tokens.shape
    k = hmm.n_states
    emit_t = hmm.emit.t().contiguous()  # (V, K): contiguous rows gather fast
    alpha = torch.empty(t_len, n, k, dtype=hmm.emit.dtype, device=hmm.device)
    scale = torch.empty(t_len, n, dtype=alpha.dtype, device=alpha.device)
    pre = torch.empty(n, k, dtype=alpha.dtype, device=alpha.device)
    restarts, pads = _rows(restart), _rows(~valid)
    for t in range(t_len):
        if t == 0:
            pre.copy_(hmm.start.expand(n, k))
        else:
            torch.mm(alpha[t - 1], hmm.trans, out=pre)
            if restarts[t] is not None:
                pre[restarts[t]] = hmm.start
        a = _emission_rows(emit_t, tokens[t], pads[t], alpha[t]).mul_(pre)
        torch.sum(a, -1, out=scale[t])
        a.div_(scale[t].unsqueeze(-1))
    return ForwardPass(alpha, scale, tokens, restart, valid)


def _backward(hmm: CategoricalHMM, fp: ForwardPass) -> torch.Tensor:
    """(T, N, K) scaled backward messages beta_hat, 1 at the last step of each sequence."""
    beta = torch.empty_like(fp.alpha)
    beta[-1] = 1.0
    emit_t, trans_t = hmm.emit.t().contiguous(), hmm.trans.t()
    restarts, pads = _rows(fp.restart), _rows(~fp.valid)
    w = torch.empty_like(beta[0])
    for t in range(fp.alpha.shape[0] - 1, 0, -1):
        _emission_rows(emit_t, fp.tokens[t], pads[t], w).mul_(beta[t])
        w.div_(fp.scale[t].unsqueeze(-1))  # w_t = b_t beta_t / c_t
        torch.mm(w, trans_t, out=beta[t - 1])
        if restarts[t] is not None:
            beta[t - 1][restarts[t]] = 1.0  # no transition into t: the sequence ended at t-1
    return beta


COUNT_ROWS = 4096  # (step, lane) rows per deferred count product: one GEMM, not a step's


def expected_counts(hmm: CategoricalHMM, batch: LaneBatch) -> HMMStats:
    """E-step on one batch: a forward pass, then one backward loop that accumulates every count.

    Only alpha is kept for the whole batch; beta lives for one step. The transition and
    emission counts of a chunk of steps (about :data:`COUNT_ROWS` rows of steps x lanes) are
    added in one product and one ``index_add_`` when the chunk ends: with few lanes (small
    data), a rank-N update per step would run far below the matmul rate.
    """
    fp = forward(hmm, batch)
    t_len, n, k = fp.alpha.shape
    like = dict(dtype=fp.alpha.dtype, device=fp.alpha.device)
    emit_t = hmm.emit.t().contiguous()  # (V, K)
    trans_t = hmm.trans.t()
    xi = torch.zeros(k, k, **like)
    emit_counts = torch.zeros(hmm.vocab_size, k, **like)
    start_counts = torch.zeros(k, **like)
    rows = _rows(fp.restart)
    valid_f = fp.valid.to(fp.alpha.dtype).unsqueeze(-1)  # (T, N, 1)
    starts = fp.restart & fp.valid  # a restart at a real token is a sequence start
    # rows per chunk: COUNT_ROWS, and at most 2**22 floats per buffer (16 MB) at large K
    chunk = max(1, min(t_len, COUNT_ROWS // n, (1 << 22) // (n * k)))
    gammas = torch.empty(chunk, n, k, **like)  # gamma_t = P(s_t | sequence), steps lo..hi
    ws = torch.zeros(chunk, n, k, **like)  # w_t = b_t beta_t / c_t (0 where no transition)
    beta = torch.ones(n, k, **like)
    for t in range(t_len - 1, -1, -1):
        lo = t - t % chunk  # this step's chunk is lo..hi; slot t - lo
        g = gammas[t - lo]
        torch.mul(fp.alpha[t], beta, out=g).mul_(valid_f[t])
        if rows[t] is not None:
            start_counts += g[starts[t]].sum(0)
        if t > 0:
            w = ws[t - lo]
            torch.index_select(emit_t, 0, fp.tokens[t], out=w)
            w.mul_(beta).div_(fp.scale[t].unsqueeze(-1))
            if rows[t] is not None:
                w[rows[t]] = 0.0  # no transition into t
            torch.mm(w, trans_t, out=beta)
            if rows[t] is not None:
                beta[rows[t]] = 1.0  # the sequence ended at t-1
        if t == lo:  # the chunk is complete: add its counts
            hi = min(lo + chunk, t_len)
            m = hi - lo
            emit_counts.index_add_(0, fp.tokens[lo:hi].reshape(-1), gammas[:m].reshape(-1, k))
            first = 1 if lo == 0 else 0  # step 0 has no transition into it
            if m > first:  # sum_t alpha_{t-1}^T w_t over the chunk's steps
                a_prev = fp.alpha[lo + first - 1 : hi - 1].reshape(-1, k)
                xi.addmm_(a_prev.t(), ws[first:m].reshape(-1, k))
    return HMMStats(
        start_counts,
        hmm.trans * xi,
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
def log_likelihood(
    hmm: CategoricalHMM, batches: Iterable[LaneBatch], per_story: np.ndarray | None = None
) -> tuple[float, int]:
    """Total log-likelihood (nats) of every sequence in ``batches``, and the token count.
    With ``per_story`` (float64, one slot per packed sequence), each sequence's nats are
    added to its slot. Streams over time: memory is O(N K) (plus (T, N) for ``per_story``).
    """
    total, n_tokens = 0.0, 0
    emit_t = hmm.emit.t().contiguous()  # (V, K): contiguous rows gather fast
    for batch in batches:
        tokens, restart, valid = _time_major(hmm, batch)
        n = tokens.shape[1]
        start = hmm.start.expand(n, hmm.n_states)
        restart = restart.unsqueeze(-1)
        prev = start
        logc = torch.zeros(tokens.shape, dtype=torch.float64, device=hmm.device)  # (T, N)
        for t in range(tokens.shape[0]):
            pre = start if t == 0 else torch.where(restart[t], start, prev @ hmm.trans)
            a = pre * emit_t[tokens[t]]
            c = a.sum(-1)
            logc[t] = torch.where(valid[t], torch.log(c.double()), 0.0)
            prev = a / c.unsqueeze(-1)
        total += float(logc.sum())
        n_tokens += int(valid.sum())
        if per_story is not None:
            story_totals(logc, batch, per_story)
    return total, n_tokens


@torch.no_grad()
def viterbi(hmm: CategoricalHMM, sequence: Sequence[int] | np.ndarray) -> tuple[np.ndarray, float]:
    """The most probable state path of one sequence and its joint log-probability."""
    x = torch.as_tensor(np.asarray(sequence, dtype=np.int64), dtype=torch.long, device=hmm.device)
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
    """Sample token sequences (and their state paths); a sequence ends after ``eos_id``.

    Inverse-CDF sampling (one uniform and a binary search per draw; ``torch.multinomial`` over
    4096 tokens is ~100x slower on a CPU), stopping once every sequence has ended."""
    g = torch.Generator(device=hmm.device).manual_seed(seed)
    dev = hmm.device
    states = torch.zeros(n_sequences, max_len, dtype=torch.long, device=dev)
    tokens = torch.zeros_like(states)
    cum_a, cum_b = (torch.cumsum(p.double(), -1) for p in (hmm.trans, hmm.emit))

    def draw(cum: torch.Tensor) -> torch.Tensor:  # cum: (n, C) rows of a CDF
        u = torch.rand(cum.shape[0], 1, generator=g, device=dev, dtype=cum.dtype) * cum[:, -1:]
        return torch.searchsorted(cum, u, right=True)[:, 0].clamp_(max=cum.shape[1] - 1)

    s = draw(torch.cumsum(hmm.start.double(), -1).expand(n_sequences, -1).contiguous())
    ended = torch.zeros(n_sequences, dtype=torch.bool, device=dev)
    for t in range(max_len):
        if t > 0:
            s = draw(cum_a[s])
        states[:, t] = s
        tokens[:, t] = draw(cum_b[s])
        if eos_id is not None:
            ended |= tokens[:, t] == eos_id
            if bool(ended.all()):
                break
    seqs, paths = [], []
    for row_x, row_s in zip(tokens.cpu().numpy(), states.cpu().numpy(), strict=True):
        end = max_len
        if eos_id is not None:
            hits = np.flatnonzero(row_x == eos_id)
            end = int(hits[0]) + 1 if len(hits) else max_len
        seqs.append(row_x[:end])
        paths.append(row_s[:end])
    return seqs, paths
