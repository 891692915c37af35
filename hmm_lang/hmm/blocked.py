"""Blocked-emission HMMs (Chiu & Rush 2020): token clusters, each owning a block of states.

Tokens are partitioned into M clusters; cluster c owns n states, which emit only the tokens of
c. The observed token x_t therefore clamps the forward message to the n states of its cluster,
and a step is an (n x n) block T[c(x_{t-1}), c(x_t)] times an emission column: O(n^2) per token
for K = M * n states in all. A cloned HMM is the special case of one token per cluster; sharing
states across a cluster's tokens is what lets a blocked HMM score token bigrams it never saw.

Blocks are stored only for cluster pairs seen in training, as a (P, n, n) tensor indexed by pair
id (a dense 65,536^2 table would be 17 GB). Unseen cluster pairs need an ``escape``, as in the
cloned HMM: with probability eps the next state is drawn from r_a(b) / n, r_a a Kneser-Ney
bigram of the cluster stream out of the source cluster a, spread evenly over b's states:
    P(s' | s) = (1 - eps) T[s, s'] + eps r_a(b) / n,   s in cluster a, s' in cluster b,
a proper HMM whose rows sum to one. A cluster never followed by another (only ``</s>``) has no
blocks; its states escape with probability 1.

Emissions are (M, n, W): state (c, i) emits the w-th member of cluster c, W the largest cluster;
slots past a cluster's size are zero.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hmm_lang.atomic import atomic_path
from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.batching import LaneBatch, story_totals


@dataclass
class BlockedStats:
    blocks: torch.Tensor  # (P, n, n) expected transition counts within seen cluster pairs
    start: torch.Tensor  # (M, n) expected initial-state counts
    emit: torch.Tensor  # (M, n, W) expected emission counts
    log_likelihood: float
    n_tokens: int

    def add_(self, other: BlockedStats) -> BlockedStats:
        self.blocks += other.blocks
        self.start += other.start
        self.emit += other.emit
        self.log_likelihood += other.log_likelihood
        self.n_tokens += other.n_tokens
        return self


def cluster_layout(cluster: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """(V,) position of each token inside its cluster and (M,) cluster sizes."""
    cluster = np.asarray(cluster, dtype=np.int64)
    sizes = np.bincount(cluster, minlength=n_clusters)
    if (sizes == 0).any():
        raise HmmLangError(f"cluster {int(np.argmin(sizes))} has no tokens; use fewer clusters")
    order = np.argsort(cluster, kind="stable")
    pos = np.empty_like(cluster)
    pos[order] = np.arange(len(cluster)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return pos, sizes


@dataclass
class BlockedHMM:
    """Blocked-emission HMM: M token clusters with n states each (see the module docstring);
    exact log-likelihood, posteriors, filtering beliefs, Viterbi, sampling, EM statistics."""

    cluster: torch.Tensor  # (V,) int64 cluster of each token
    pairs: torch.Tensor  # (P,) int64 sorted keys a * M + b of the cluster pairs seen in training
    blocks: torch.Tensor  # (P, n, n) T[(a, i), (b, j)]; rows sum to 1 over all blocks of a
    start: torch.Tensor  # (M, n) P(s_1 = (c, i)); sums to 1
    emit: torch.Tensor  # (M, n, W) P(x = member w of c | (c, i)); rows sum to 1
    escape_next: torch.Tensor  # (M, M) r_a(b): the escape's cluster distribution
    escape_first: torch.Tensor  # (M,) r for the first token of a sequence
    escape: float = 1e-2
    escape_parameters: int = 0

    # ---- shape -----------------------------------------------------------------------------
    @property
    def n_clusters(self) -> int:
        return self.start.shape[0]

    @property
    def block_size(self) -> int:
        return self.start.shape[1]

    @property
    def n_states(self) -> int:
        return self.n_clusters * self.block_size

    @property
    def vocab_size(self) -> int:
        return self.cluster.shape[0]

    @functools.cached_property
    def _layout(self) -> tuple[torch.Tensor, torch.Tensor]:
        pos, sizes = cluster_layout(self.cluster.numpy(), self.n_clusters)
        return torch.from_numpy(pos), torch.from_numpy(sizes)

    @property
    def position(self) -> torch.Tensor:
        """(V,) index of each token among its cluster's members."""
        return self._layout[0]

    @property
    def member_mask(self) -> torch.Tensor:
        """(M, W) bool: which emission slots hold a token."""
        return torch.arange(self.emit.shape[2]) < self._layout[1][:, None]

    @property
    def n_parameters(self) -> int:
        """Free parameters: seen-block entries less one per source row, emissions less one per
        state, starts less one, the escape model and its mass."""
        n, m = self.block_size, self.n_clusters
        rows = int((~self._leaf).sum()) * n
        emit = n * (self.vocab_size - m)  # each state: its cluster's size less one
        blocks = len(self.pairs) * n * n - rows
        return blocks + emit + self.n_states - 1 + self.escape_parameters + 1

    @functools.cached_property
    def _leaf(self) -> torch.Tensor:
        """(M,) bool: clusters with no seen successor (their states' rows are all escape)."""
        has = torch.zeros(self.n_clusters, dtype=torch.bool)
        has[(self.pairs // self.n_clusters).long()] = True
        return ~has

    def escape_of(self, prev_cluster: torch.Tensor) -> torch.Tensor:
        eps = torch.full(prev_cluster.shape, self.escape, dtype=self.start.dtype)
        return torch.where(self._leaf[prev_cluster], torch.ones_like(eps), eps)

    # ---- lookups ---------------------------------------------------------------------------
    def pair_ids(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Block index of each (prev, cur) cluster pair; P (an all-zero block) where unseen."""
        key = prev.long() * self.n_clusters + cur.long()
        idx = torch.searchsorted(self.pairs, key).clamp(max=len(self.pairs) - 1)
        return torch.where(self.pairs[idx] == key, idx, len(self.pairs))

    @functools.cached_property
    def _blocks_ext(self) -> torch.Tensor:
        """(P + 1, n, n): the blocks and an all-zero block for unseen pairs (the parameters of a
        BlockedHMM never change in place; an M-step returns a new model)."""
        zero = torch.zeros(1, self.block_size, self.block_size, dtype=self.blocks.dtype)
        return torch.cat([self.blocks, zero])

    @functools.cached_property
    def _emit_by_token(self) -> torch.Tensor:
        """(V, n): P(v | (c(v), i)), the emission column each token reads."""
        return self.emit[self.cluster, :, self.position]

    def _prepare(self, batch: LaneBatch):
        tokens = batch.tokens.t().contiguous()  # (T, N)
        valid = batch.valid.t().contiguous()
        restart = ~(valid & ~batch.start.t())
        cl = self.cluster[tokens]
        pid = torch.full_like(tokens, len(self.pairs))
        pid[1:] = self.pair_ids(cl[:-1], cl[1:])
        pid[restart] = len(self.pairs)
        return tokens, cl, valid, restart, pid

    # ---- inference -------------------------------------------------------------------------
    def _forward(self, batch: LaneBatch, keep: bool):
        tokens, cl, valid, restart, pid = self._prepare(batch)
        blocks, eps, n = self._blocks_ext, self.escape, self.block_size
        em_all = self._emit_by_token
        t_len, lanes = tokens.shape
        alphas = torch.empty(t_len, lanes, n, dtype=self.blocks.dtype) if keep else None
        scale = torch.ones(t_len, lanes, dtype=torch.float64)
        prev = None
        for t in range(t_len):
            c = cl[t]
            first = (1 - eps) * self.start[c] + (eps / n) * self.escape_first[c, None]
            if t > 0:
                step = torch.bmm(prev.unsqueeze(1), blocks[pid[t]]).squeeze(1)
                e = self.escape_of(cl[t - 1])[:, None]
                r = self.escape_next[cl[t - 1], c][:, None] / n
                first = torch.where(restart[t, :, None], first, (1 - e) * step + e * r)
            pre = first * em_all[tokens[t]]
            s = pre.sum(-1)
            prev = pre / s.unsqueeze(-1)
            scale[t] = torch.where(valid[t], s.double(), 1.0)
            if keep:
                alphas[t] = prev
        return alphas, scale, (tokens, cl, valid, restart, pid)

    @torch.no_grad()
    def log_likelihood(
        self, batches: Iterable[LaneBatch], per_story: np.ndarray | None = None
    ) -> tuple[float, int]:
        """Total log-likelihood (nats) and token count; with ``per_story``, each sequence's
        nats are added to its slot."""
        total, n_tok = 0.0, 0
        for batch in batches:
            _, scale, _ = self._forward(batch, keep=False)
            logc = torch.log(scale)
            total += float(logc.sum())
            n_tok += batch.n_tokens
            if per_story is not None:
                story_totals(logc, batch, per_story)
        return total, n_tok

    @torch.no_grad()
    def filter_beliefs(self, batch: LaneBatch) -> torch.Tensor:
        """(N, T, n) P(s_t | x_1..t) over the states of x_t's cluster (zero at padding)."""
        alphas, _, prep = self._forward(batch, keep=True)
        return (alphas * prep[2].unsqueeze(-1)).transpose(0, 1)

    def _backward_pass(self, batch: LaneBatch, visit):
        """Run the forward pass, then the backward pass, calling ``visit(t, alpha_t, beta_t,
        w_t, ...)`` at each step from the last; returns the total log-likelihood and tokens."""
        alphas, scale, (tokens, cl, valid, restart, pid) = self._forward(batch, keep=True)
        blocks, n = self._blocks_ext, self.block_size
        em_all = self._emit_by_token
        beta = torch.ones(tokens.shape[1], n, dtype=self.blocks.dtype)
        sc = scale.to(self.blocks.dtype)
        for t in range(tokens.shape[0] - 1, -1, -1):
            w = em_all[tokens[t]] * beta / sc[t].unsqueeze(-1)  # (N, n)
            visit(t, alphas, beta, w, (tokens, cl, valid, restart, pid))
            if t == 0:
                break
            e = self.escape_of(cl[t - 1])[:, None]
            back = (1 - e) * torch.bmm(blocks[pid[t]], w.unsqueeze(2)).squeeze(2)
            r = self.escape_next[cl[t - 1], cl[t]][:, None] / n
            back = back + e * r * w.sum(-1, keepdim=True)
            beta = torch.where(restart[t, :, None], torch.ones_like(beta), back)
        return float(torch.log(scale).sum()), int(valid.sum())

    @torch.no_grad()
    def expected_counts(self, batch: LaneBatch, into: BlockedStats | None = None) -> BlockedStats:
        """Expected counts of ``batch``, added to ``into`` (returned) when given."""
        m, n, width = self.n_clusters, self.block_size, self.emit.shape[2]
        blocks, eps = self._blocks_ext, self.escape
        counts = torch.zeros_like(blocks, dtype=torch.float64)
        start = torch.zeros(m, n, dtype=torch.float64)
        emit = torch.zeros(m * width, n, dtype=torch.float64)
        pos = self.position

        def visit(t, alphas, beta, w, prep):
            tokens, cl, valid, restart, pid = prep
            gamma = alphas[t] * beta  # (N, n) posterior of s_t (zero-weighted at padding below)
            ok = valid[t]
            emit.index_add_(0, (cl[t] * width + pos[tokens[t]])[ok], gamma[ok].double())
            is_start = restart[t] & ok
            if is_start.any():
                c0 = cl[t][is_start]
                g0 = (1 - eps) * self.start[c0] * w[is_start]
                start.index_add_(0, c0, g0.double())
            if t > 0:
                e = self.escape_of(cl[t - 1])[:, None]
                xi = ((1 - e) * alphas[t - 1]).unsqueeze(2) * blocks[pid[t]] * w.unsqueeze(1)
                counts.index_add_(0, pid[t], xi.double())

        ll, n_tok = self._backward_pass(batch, visit)
        emit = emit.view(m, width, n).transpose(1, 2).contiguous()
        stats = BlockedStats(counts[:-1], start, emit, ll, n_tok)
        return stats if into is None else into.add_(stats)

    @torch.no_grad()
    def posteriors(self, batch: LaneBatch) -> torch.Tensor:
        """(N, T, n) P(s_t | x_1..T) over the states of x_t's cluster (zero at padding)."""
        out = torch.zeros(batch.tokens.shape[1], batch.tokens.shape[0], self.block_size)

        def visit(t, alphas, beta, w, prep):
            out[t] = (alphas[t] * beta * prep[2][t, :, None]).float()

        self._backward_pass(batch, visit)
        return out.transpose(0, 1)

    def log_prior(self, smoothing: float) -> float:
        """Dirichlet(1 + smoothing) log density of the active parameters, up to a constant."""
        if smoothing == 0:
            return 0.0
        mask = self.member_mask[:, None, :].expand_as(self.emit)
        return smoothing * float(
            torch.log(self.blocks.double()).sum()
            + torch.log(self.start.double()).sum()
            + torch.log(self.emit.double()[mask]).sum()
        )

    def m_step(self, stats: BlockedStats, smoothing: float = 0.0) -> BlockedHMM:
        """Normalise block counts per source state (over every block of its cluster), the
        emissions per state over its cluster's members, and the start."""
        src = (self.pairs // self.n_clusters).long()
        c = stats.blocks + smoothing
        rows = torch.zeros(self.n_clusters, self.block_size, dtype=torch.float64)
        rows.index_add_(0, src, c.sum(2))
        blocks = c / rows[src].unsqueeze(2).clamp(min=1e-300)
        start = stats.start + smoothing
        start = start / start.sum()
        em = (stats.emit + smoothing) * self.member_mask[:, None, :]
        em = em / em.sum(-1, keepdim=True)
        dt = self.blocks.dtype
        return BlockedHMM(
            self.cluster,
            self.pairs,
            blocks.to(dt),
            start.to(dt),
            em.to(dt),
            self.escape_next,
            self.escape_first,
            self.escape,
            self.escape_parameters,
        )

    # ---- exact views, decoding, sampling -------------------------------------------------
    def to_dense(self):
        """The same model as a :class:`CategoricalHMM` over K = M * n states (state c * n + i),
        with zero emissions outside each state's cluster. For tests and small models."""
        from hmm_lang.hmm.model import CategoricalHMM

        m, n, eps = self.n_clusters, self.block_size, self.escape
        k = m * n
        trans = torch.zeros(m, n, m, n, dtype=torch.float64)
        src, dst = (self.pairs // m).long(), (self.pairs % m).long()
        trans[src, :, dst, :] = self.blocks.double()
        e = torch.where(self._leaf, 1.0, eps).double()
        esc = self.escape_next.double()[:, None, :, None] / n
        trans = (1 - e)[:, None, None, None] * trans + e[:, None, None, None] * esc
        start = (1 - eps) * self.start.double() + eps * self.escape_first.double()[:, None] / n
        emit = torch.zeros(m, n, self.vocab_size, dtype=torch.float64)
        emit[self.cluster, :, torch.arange(self.vocab_size)] = self._emit_by_token.double()
        return CategoricalHMM(
            start.reshape(k), trans.reshape(k, k), emit.reshape(k, self.vocab_size)
        )

    @torch.no_grad()
    def viterbi(self, sequence: Sequence[int] | np.ndarray) -> tuple[np.ndarray, float]:
        """Most probable state path (state index within each token's cluster) and its
        log-probability."""
        x = torch.as_tensor(np.asarray(sequence, dtype=np.int64), dtype=torch.long)
        cl, n, eps = self.cluster[x], self.block_size, self.escape
        em = self._emit_by_token.double()
        first = (1 - eps) * self.start[cl[0]].double() + eps * self.escape_first[cl[0]] / n
        delta = torch.log(first * em[x[0]])
        back = []
        for t in range(1, len(x)):
            pid = self.pair_ids(cl[t - 1 : t], cl[t : t + 1])
            blk = self._blocks_ext[pid[0]].double()
            e = float(self.escape_of(cl[t - 1 : t])[0])
            r = float(self.escape_next[cl[t - 1], cl[t]]) / n
            scores = delta.unsqueeze(1) + torch.log((1 - e) * blk + e * r)
            delta, arg = scores.max(0)
            delta = delta + torch.log(em[x[t]])
            back.append(arg)
        path = np.empty(len(x), dtype=np.int64)
        best, last = delta.max(0)
        path[-1] = int(last)
        for t in range(len(x) - 1, 0, -1):
            path[t - 1] = int(back[t - 1][path[t]])
        return path, float(best)

    @torch.no_grad()
    def sample(
        self, n_sequences: int, max_len: int, eos_id: int | None = None, seed: int = 0
    ) -> list[np.ndarray]:
        """Token sequences drawn from the model (states drawn along and dropped)."""
        g = torch.Generator().manual_seed(seed)
        m, n = self.n_clusters, self.block_size
        members = torch.full((m, self.emit.shape[2]), -1, dtype=torch.long)
        members[self.cluster, self.position] = torch.arange(self.vocab_size)
        src = (self.pairs // m).long()
        first = torch.searchsorted(src, torch.arange(m + 1))
        start = (1 - self.escape) * self.start + self.escape * self.escape_first[:, None] / n
        out = []

        def draw(p):
            return int(torch.multinomial(p.flatten().double(), 1, generator=g))

        for _ in range(n_sequences):
            c, i = divmod(draw(start), n)
            tok = int(members[c, draw(self.emit[c, i])])
            seq = [tok]
            while len(seq) < max_len and (eos_id is None or tok != eos_id):
                a, b = int(first[c]), int(first[c + 1])
                if a < b and float(torch.rand(1, generator=g)) >= self.escape:
                    j = draw(self.blocks[a:b, i, :])
                    c, i = int(self.pairs[a + j // n] % m), j % n
                else:
                    c, i = draw(self.escape_next[c]), draw(torch.ones(n))
                tok = int(members[c, draw(self.emit[c, i])])
                seq.append(tok)
            out.append(np.array(seq))
        return out

    # ---- persistence -----------------------------------------------------------------------
    _FIELDS = ("cluster", "pairs", "blocks", "start", "emit", "escape_next", "escape_first")

    def save(self, path, config: dict | None = None) -> None:
        with atomic_path(path) as tmp:
            d = {f: getattr(self, f) for f in self._FIELDS}
            d |= {"kind": "blocked_hmm", "escape": self.escape, "config": config or {}}
            d["escape_parameters"] = self.escape_parameters
            torch.save(d, tmp)

    @classmethod
    def load(cls, path) -> tuple[BlockedHMM, dict]:
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise HmmLangError(
                f"cannot read blocked HMM file {path} ({type(e).__name__}); refit it"
            ) from None
        if not isinstance(d, dict) or d.get("kind") != "blocked_hmm":
            raise HmmLangError(f"{path} is not a saved BlockedHMM")
        for name in ("blocks", "start", "emit", "escape_next", "escape_first"):
            t = d[name]
            if not torch.isfinite(t).all() or (t < 0).any():
                raise HmmLangError(f"blocked HMM {path}: {name} holds NaN or negative values")
        model = cls(*(d[f] for f in cls._FIELDS), d["escape"], int(d.get("escape_parameters", 0)))
        return model, d.get("config", {})
