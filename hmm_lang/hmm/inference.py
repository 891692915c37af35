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
    active: list[int]  # per step, lanes [0, active[t]) are computed; the rest are padding
    inside: torch.Tensor  # (T, N) bool: lane < active[t]

    @property
    def log_likelihood(self) -> float:
        return float(torch.log(self.scale.double()).sum())


def _time_major(hmm: CategoricalHMM, batch: LaneBatch):
    tokens = batch.tokens.t().contiguous().to(hmm.device)  # (T, N)
    valid = batch.valid.t().contiguous().to(hmm.device)
    restart = ~(valid & ~batch.start.t().to(hmm.device))
    return tokens, restart, valid


def _active(valid: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Per step, 1 + the last lane with a token at this step or later (non-increasing in t), and
    the (T, N) mask of lanes below it. Lanes past it are padding from that step on: with lanes
    longest first (:func:`~hmm_lang.hmm.batching.pack_lanes`), late steps compute few rows."""
    n = valid.shape[1]
    last = (valid * torch.arange(1, n + 1, device=valid.device)).amax(1)  # (T,); 0: no token
    active = torch.flip(torch.cummax(torch.flip(last, [0]), 0).values, [0])
    inside = torch.arange(n, device=valid.device) < active.unsqueeze(1)
    return active.tolist(), inside


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


def forward(hmm: CategoricalHMM, batch: LaneBatch, fill_padding: bool = True) -> ForwardPass:
    """Scaled forward pass over a lane batch, keeping every step's belief. Only the active
    lanes of each step are computed; ``fill_padding=False`` leaves the alpha rows past them
    unset (the E-step never reads them)."""
    tokens, restart, valid = _time_major(hmm, batch)
    t_len, n = tokens.shape
    k = hmm.n_states
    active, inside = _active(valid)
    emit_t = hmm.emit.t().contiguous()  # (V, K): contiguous rows gather fast
    alpha = torch.empty(t_len, n, k, dtype=hmm.emit.dtype, device=hmm.device)
    scale = torch.ones(t_len, n, dtype=alpha.dtype, device=alpha.device)
    pre = torch.empty(n, k, dtype=alpha.dtype, device=alpha.device)
    restarts, pads = _rows(restart & inside), _rows(~valid & inside)
    for t in range(t_len):
        h = active[t]
        if h == 0:  # no tokens from here on
            break
        p = pre[:h]
        if t == 0:
            p.copy_(hmm.start.expand(h, k))
        else:
            torch.mm(alpha[t - 1, :h], hmm.trans, out=p)
            if restarts[t] is not None:
                p[restarts[t]] = hmm.start
        a = _emission_rows(emit_t, tokens[t, :h], pads[t], alpha[t, :h]).mul_(p)
        torch.sum(a, -1, out=scale[t, :h])
        a.div_(scale[t, :h].unsqueeze(-1))
    if fill_padding:
        alpha[~inside] = hmm.start
    return ForwardPass(alpha, scale, tokens, restart, valid, active, inside)


def _backward(hmm: CategoricalHMM, fp: ForwardPass) -> torch.Tensor:
    """(T, N, K) scaled backward messages beta_hat, 1 at the last step of each sequence."""
    beta = torch.ones_like(fp.alpha)  # rows past the active lanes stay 1
    emit_t, trans_t = hmm.emit.t().contiguous(), hmm.trans.t()
    restarts, pads = _rows(fp.restart & fp.inside), _rows(~fp.valid & fp.inside)
    w = torch.empty_like(beta[0])
    for t in range(fp.alpha.shape[0] - 1, 0, -1):
        h = fp.active[t]
        if h == 0:
            continue
        wt = _emission_rows(emit_t, fp.tokens[t, :h], pads[t], w[:h]).mul_(beta[t, :h])
        wt.div_(fp.scale[t, :h].unsqueeze(-1))  # w_t = b_t beta_t / c_t
        torch.mm(wt, trans_t, out=beta[t - 1, :h])
        if restarts[t] is not None:
            beta[t - 1][restarts[t]] = 1.0  # no transition into t: the sequence ended at t-1
    return beta


COUNT_ROWS = 4096  # (step, lane) rows per deferred count product: one GEMM, not a step's


def _count_chunks(active: list[int], k: int) -> list[tuple[int, int]]:
    """Steps [lo, hi) whose active rows (about :data:`COUNT_ROWS`, at most 2**22 floats per
    buffer at large K, at least one step) share one count product."""
    cap = max(1, min(COUNT_ROWS, (1 << 22) // k))
    end = next((t for t, h in enumerate(active) if h == 0), len(active))  # steps with tokens
    chunks, lo, rows = [], 0, 0
    for t in range(end):
        if t > lo and rows + active[t] > cap:
            chunks.append((lo, t))
            lo, rows = t, 0
        rows += active[t]
    chunks.append((lo, end))
    return chunks


def expected_counts(hmm: CategoricalHMM, batch: LaneBatch) -> HMMStats:
    """E-step on one batch: a forward pass, then one backward loop that accumulates every count.

    Only alpha is kept for the whole batch; beta lives for one step. Each step's gamma and
    w_t = b_t beta_t / c_t are written for its active lanes only, packed row after row; the
    transition and emission counts of a chunk of steps (about :data:`COUNT_ROWS` rows) are
    added in one product and one ``index_add_`` when the chunk ends: with few lanes (small
    data), a rank-N update per step would run far below the matmul rate.
    """
    fp = forward(hmm, batch, fill_padding=False)
    t_len, n, k = fp.alpha.shape
    like = dict(dtype=fp.alpha.dtype, device=fp.alpha.device)
    emit_t = hmm.emit.t().contiguous()  # (V, K)
    trans_t = hmm.trans.t()
    xi = torch.zeros(k, k, **like)
    emit_counts = torch.zeros(hmm.vocab_size, k, **like)
    start_counts = torch.zeros(k, **like)
    active, inside = fp.active, fp.inside
    restarts, pads = _rows(fp.restart & inside), _rows(~fp.valid & inside)
    starts = _rows(fp.restart & fp.valid)  # a restart at a real token is a sequence start
    # the packed rows: (step, lane) for lane < active[step], in time order
    flat = torch.nonzero(inside.reshape(-1), as_tuple=True)[0]  # t * n + lane
    tok = fp.tokens.reshape(-1)[flat]
    offset = [0]
    for h in active:
        offset.append(offset[-1] + h)
    chunks = _count_chunks(active, k)
    size = max(offset[hi] - offset[lo] for lo, hi in chunks)
    gammas = torch.empty(size, k, **like)  # gamma_t = P(s_t | sequence), packed rows
    ws = torch.empty(size, k, **like)  # w_t (0 where no transition into t)
    alpha_rows = fp.alpha.reshape(-1, k)
    beta = torch.ones(n, k, **like)  # rows past the active lanes stay 1: a sequence's end
    for lo, hi in reversed(chunks):
        base = offset[lo]
        for t in range(hi - 1, lo - 1, -1):
            h, pos = active[t], offset[t] - base
            g = torch.mul(fp.alpha[t, :h], beta[:h], out=gammas[pos : pos + h])
            if pads[t] is not None:
                g[pads[t]] = 0.0
            if starts[t] is not None:
                start_counts += g[starts[t]].sum(0)
            if t > 0:
                w = torch.index_select(emit_t, 0, fp.tokens[t, :h], out=ws[pos : pos + h])
                w.mul_(beta[:h]).div_(fp.scale[t, :h].unsqueeze(-1))
                if restarts[t] is not None:
                    w[restarts[t]] = 0.0  # no transition into t
                torch.mm(w, trans_t, out=beta[:h])
                if restarts[t] is not None:
                    beta[restarts[t]] = 1.0  # the sequence ended at t-1
        m = offset[hi] - base
        emit_counts.index_add_(0, tok[base : base + m], gammas[:m])
        first = active[0] if lo == 0 else 0  # step 0 has no transition into it
        if m > first:  # sum_t alpha_{t-1}^T w_t over the chunk's steps
            if active[hi - 1] == n:  # every lane active: the rows are alpha[lo-1:hi-1] as is
                a_prev = fp.alpha[lo + (lo == 0) - 1 : hi - 1].reshape(-1, k)
            else:
                a_prev = alpha_rows.index_select(0, flat[base + first : base + m] - n)
            xi.addmm_(a_prev.t(), ws[first:m])
    return HMMStats(
        start_counts,
        hmm.trans * xi,
        emit_counts.t(),
        float(torch.log(fp.scale.double()).sum()),
        int(fp.valid.sum()),
        sum(len(r) for r in starts if r is not None),
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
        active, _ = _active(valid)
        start = hmm.start.expand(tokens.shape[1], hmm.n_states)
        restart = restart.unsqueeze(-1)
        prev = start
        logc = torch.zeros(tokens.shape, dtype=torch.float64, device=hmm.device)  # (T, N)
        for t, h in enumerate(active):
            if h == 0:
                break
            if t == 0:
                pre = start[:h]
            else:
                pre = torch.where(restart[t, :h], start[:h], prev[:h] @ hmm.trans)
            a = pre * emit_t[tokens[t, :h]]
            c = a.sum(-1)
            logc[t, :h] = torch.where(valid[t, :h], torch.log(c.double()), 0.0)
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
