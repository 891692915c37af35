"""Cloned HMMs (Dedieu et al. 2019): every token owns a few clone states that emit only it.

With emissions deterministic, the forward message at step t lives on the clones of x_t, so a
step is an (n x n) block T[clones(x_{t-1}), clones(x_t)]: O(n^2) per token whatever the total
number of states (V * n, e.g. 4096 x 16 = 65,536). Blocks are stored only for bigrams seen in
training, as a (B, n, n) tensor indexed by bigram id.

Held-out text has bigrams never seen in training, which a pure cloned HMM gives probability
zero. So every transition keeps an ``escape`` mass: with probability eps the next state is
drawn from q_u, a token distribution that depends on the source state's token u, spread evenly
over the next token's clones:
    P(s' | s) = (1 - eps) T[s, s'] + eps q_u(v') / n(v'),   s a clone of u, s' one of v',
still an HMM with rows that sum to one. q_u is a Kneser-Ney bigram P_KN(v' | u) of the training
stories (the first token's q is P_KN(v | </s>): a story starts where the previous one ended), or
the add-one unigram (``escape_model="unigram"``, the older choice, which taxes every seen
transition equally). eps is fixed during EM and tuned on the dev split after. A token never
followed by another in training (``</s>``) has no blocks: its clones escape with probability 1.

Clone counts may vary by token (allocation by frequency); blocks are padded to the largest
count, and padded clones carry zero probability everywhere.
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
class ClonedStats:
    blocks: torch.Tensor  # (B, n, n) expected transition counts within seen bigrams
    start: torch.Tensor  # (V, n) expected initial-clone counts
    log_likelihood: float
    n_tokens: int

    def add_(self, other: ClonedStats) -> ClonedStats:
        self.blocks += other.blocks
        self.start += other.start
        self.log_likelihood += other.log_likelihood
        self.n_tokens += other.n_tokens
        return self


@dataclass
class ClonedHMM:
    """Cloned HMM: each token owns clone states that emit only it, with a Kneser-Ney escape
    for unseen bigrams (see the module docstring)."""

    bigrams: torch.Tensor  # (B,) int64 sorted keys u * V + v of the bigrams seen in training
    blocks: torch.Tensor  # (B, n, n) T[(u, c), (v, c')]; rows sum to 1 over all blocks of u
    start: torch.Tensor  # (V, n) P(s_1 = (v, c)); sums to 1
    escape_next: torch.Tensor  # (V, V) q_u(v) at [u, v]: the escape's token distribution
    escape_first: torch.Tensor  # (V,) q for the first token of a sequence
    clones: torch.Tensor  # (V,) int64 active clones per token
    escape: float = 1e-2
    escape_parameters: int = 0  # free parameters of the escape model (counted in n_parameters)

    def __post_init__(self):
        # the blocks live in a (B + 1, n, n) table whose last block is all zeros (the block of
        # an unseen bigram), ``blocks`` a view of its first B: a step gathers table[bid] with no
        # second copy of the table (at 65,536 states and V=2048 one copy is 1.9 GB)
        b = self.blocks
        base = b._base
        if (
            base is not None
            and base.shape == (b.shape[0] + 1, *b.shape[1:])
            and base.data_ptr() == b.data_ptr()
            and not base[-1].any()
        ):
            self._table = base
        else:
            self._table = with_zero_block(b, b.dtype)
            self.blocks = self._table[:-1]

    @property
    def vocab_size(self) -> int:
        return self.start.shape[0]

    @property
    def max_clones(self) -> int:
        return self.start.shape[1]

    @property
    def n_states(self) -> int:
        return int(self.clones.sum())

    @property
    def n_parameters(self) -> int:
        """Free transition parameters in the seen blocks, plus the start distribution."""
        u = (self.bigrams // self.vocab_size).long()
        active = self.clones[u] * self.clones[(self.bigrams % self.vocab_size).long()]
        # block entries, less one normalisation per source clone that has blocks, plus
        # (n_states - 1) starts, plus the escape model's own parameters and its mass
        rows = int((self.active & ~self._leaf[:, None]).sum())
        return int(active.sum()) - rows + self.n_states - 1 + self.escape_parameters + 1

    @functools.cached_property
    def _leaf(self) -> torch.Tensor:
        """(V,) bool: tokens with no seen successor (their clones' rows are all escape)."""
        has = torch.zeros(self.vocab_size, dtype=torch.bool)
        has[(self.bigrams // self.vocab_size).long()] = True
        return ~has

    def escape_of(self, prev: torch.Tensor) -> torch.Tensor:
        """Escape probability out of clones of each token in ``prev``: eps, or 1 at leaves."""
        eps = torch.full(prev.shape, self.escape, dtype=self.start.dtype)
        return torch.where(self._leaf[prev], torch.ones_like(eps), eps)

    @functools.cached_property
    def share(self) -> torch.Tensor:
        """(V, n) 1/n(v) on the active clones of v: how escape mass spreads over clones."""
        return self.active.to(self.start.dtype) / self.clones[:, None].to(self.start.dtype)

    @property
    def active(self) -> torch.Tensor:
        """(V, n) bool: which clone slots exist."""
        return torch.arange(self.max_clones) < self.clones[:, None]

    # ---- lookups -------------------------------------------------------------------------
    def bigram_ids(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Block index of each (prev, cur) pair; B (an all-zero block) where unseen."""
        key = prev.long() * self.vocab_size + cur.long()
        idx = torch.searchsorted(self.bigrams, key).clamp(max=len(self.bigrams) - 1)
        return torch.where(self.bigrams[idx] == key, idx, len(self.bigrams))

    @property
    def _blocks_ext(self) -> torch.Tensor:
        """(B + 1, n, n) the blocks plus an all-zero block for unseen bigrams (the parameters
        of a ClonedHMM never change; an M-step returns a new model)."""
        return self._table

    def _prepare(self, batch: LaneBatch):
        tokens = batch.tokens.t().contiguous()  # (T, N)
        valid = batch.valid.t().contiguous()
        restart = ~(valid & ~batch.start.t())
        bid = torch.full_like(tokens, len(self.bigrams))
        bid[1:] = self.bigram_ids(tokens[:-1], tokens[1:])
        bid[restart] = len(self.bigrams)
        return tokens, valid, restart, bid

    # ---- inference -----------------------------------------------------------------------
    def _forward(self, batch: LaneBatch, keep: bool):
        tokens, valid, restart, bid = self._prepare(batch)
        blocks, eps = self._blocks_ext, self.escape
        t_len, n = tokens.shape
        alphas = torch.empty(t_len, n, self.max_clones, dtype=self.blocks.dtype) if keep else None
        scale = torch.ones(t_len, n, dtype=torch.float64)
        prev = None
        share = self.share
        for t in range(t_len):
            v = tokens[t]
            pre = (1 - eps) * self.start[v] + eps * self.escape_first[v, None] * share[v]
            if t > 0:
                step = torch.bmm(prev.unsqueeze(1), blocks[bid[t]]).squeeze(1)
                q = self.escape_next[tokens[t - 1], v]  # (N,)
                e = self.escape_of(tokens[t - 1])[:, None]  # (N, 1)
                pre = torch.where(
                    restart[t, :, None], pre, (1 - e) * step + e * q[:, None] * share[v]
                )
            c = pre.sum(-1)
            prev = pre / c.unsqueeze(-1)
            scale[t] = torch.where(valid[t], c.double(), 1.0)
            if keep:
                alphas[t] = prev
        return alphas, scale, (tokens, valid, restart, bid)

    @torch.no_grad()
    def log_likelihood(
        self, batches: Iterable[LaneBatch], per_story: np.ndarray | None = None
    ) -> tuple[float, int]:
        """Total log-likelihood (nats) of the sequences in ``batches`` and their token count;
        with ``per_story``, each sequence's nats are added to its slot."""
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
    def expected_counts(self, batch: LaneBatch, into: ClonedStats | None = None) -> ClonedStats:
        """Expected counts of ``batch``, added to ``into`` (returned) when given: an E-step
        over many batches holds one (B, n, n) float64 table, not two."""
        alphas, scale, (tokens, valid, restart, bid) = self._forward(batch, keep=True)
        blocks, eps = self._blocks_ext, self.escape
        n_seen = len(self.bigrams)
        if into is None:
            into = ClonedStats(
                torch.zeros(self.blocks.shape, dtype=torch.float64),
                torch.zeros(self.start.shape, dtype=torch.float64),
                0.0,
                0,
            )
        counts, start_counts = into.blocks, into.start
        beta = torch.ones(tokens.shape[1], self.max_clones, dtype=self.blocks.dtype)
        sc = scale.to(self.blocks.dtype)
        for t in range(tokens.shape[0] - 1, -1, -1):
            # posterior mass of the start component (not its escape part) at sequence starts
            is_start = restart[t] & valid[t]
            if is_start.any():
                v0 = tokens[t][is_start]
                gamma = (1 - eps) * self.start[v0] * beta[is_start] / sc[t][is_start, None]
                start_counts.index_add_(0, v0, gamma.double())
            if t == 0:
                break
            w = beta / sc[t].unsqueeze(-1)  # (N, n)
            blk = blocks[bid[t]]  # (N, n, n)
            e = self.escape_of(tokens[t - 1])[:, None]  # (N, 1): eps, or 1 out of a leaf
            xi = ((1 - e) * alphas[t - 1]).unsqueeze(2) * blk * w.unsqueeze(1)
            seen = bid[t] < n_seen  # unseen bigrams (the zero block) have no counts to keep
            if bool(seen.all()):
                counts.index_add_(0, bid[t], xi.double())
            else:
                counts.index_add_(0, bid[t][seen], xi[seen].double())
            back = (1 - e) * torch.bmm(blk, w.unsqueeze(2)).squeeze(2)
            q = self.escape_next[tokens[t - 1], tokens[t]]  # (N,)
            back = back + e * q[:, None] * (self.share[tokens[t]] * w).sum(-1, keepdim=True)
            beta = torch.where(restart[t, :, None], torch.ones_like(beta), back)
        into.log_likelihood += float(torch.log(scale).sum())
        into.n_tokens += int(valid.sum())
        return into

    def log_prior(self, smoothing: float) -> float:
        """Dirichlet(1 + smoothing) log density of the active parameters, up to a constant."""
        if smoothing == 0:
            return 0.0
        u = (self.bigrams // self.vocab_size).long()
        v = (self.bigrams % self.vocab_size).long()
        blocks = 0.0
        for a in range(0, len(u), PRIOR_CHUNK):  # chunks: no float64 copy of the whole table
            pair = self.active[u[a : a + PRIOR_CHUNK]].unsqueeze(2) & self.active[
                v[a : a + PRIOR_CHUNK]
            ].unsqueeze(1)
            blocks += float(torch.log(self.blocks[a : a + PRIOR_CHUNK][pair].double()).sum())
        start = float(torch.log(self.start.double()[self.active]).sum())
        return smoothing * (blocks + start)

    def m_step(self, stats: ClonedStats, smoothing: float = 0.0) -> ClonedHMM:
        """Re-normalise the block counts per source clone (over every block of its token)."""
        mask = self.active
        u = (self.bigrams // self.vocab_size).long()
        v = (self.bigrams % self.vocab_size).long()
        # in place on one float64 copy of the counts (at 65,536 states the table is GBs)
        c = stats.blocks + smoothing
        c.mul_(mask[u].unsqueeze(2) & mask[v].unsqueeze(1))
        rows = torch.zeros(self.vocab_size, self.max_clones, dtype=torch.float64)
        rows.index_add_(0, u, c.sum(2))
        denom = rows[u].unsqueeze(2)
        c.div_(denom.clamp(min=1e-300)).mul_(denom > 0)
        table = with_zero_block(c, self.blocks.dtype)
        del c
        start = (stats.start + smoothing) * mask
        start = start / start.sum()
        return ClonedHMM(
            self.bigrams,
            table[:-1],
            start.to(self.start.dtype),
            self.escape_next,
            self.escape_first,
            self.clones,
            self.escape,
            self.escape_parameters,
        )

    # ---- decoding and sampling -----------------------------------------------------------
    @torch.no_grad()
    def viterbi(self, sequence: Sequence[int] | np.ndarray) -> tuple[np.ndarray, float]:
        """Most probable clone path (clone index within each token) and its log-probability."""
        x = torch.as_tensor(np.asarray(sequence, dtype=np.int64), dtype=torch.long)
        eps = self.escape
        share = self.share.double()
        first = self.escape_first[x[0]].double() * share[x[0]]
        delta = torch.log((1 - eps) * self.start[x[0]].double() + eps * first)
        back = []
        for t in range(1, len(x)):
            bid = self.bigram_ids(x[t - 1 : t], x[t : t + 1])
            blk = self._blocks_ext[bid[0]].double()
            q = self.escape_next[x[t - 1], x[t]].double() * share[x[t]]
            e = float(self.escape_of(x[t - 1 : t])[0])
            trans = torch.log((1 - e) * blk + e * q)
            scores = delta.unsqueeze(1) + trans
            delta, arg = scores.max(0)
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
        """Token sequences drawn from the model (the clone is drawn along and dropped)."""
        g = torch.Generator().manual_seed(seed)
        n = self.max_clones
        u_of = (self.bigrams // self.vocab_size).long()
        first = torch.searchsorted(u_of, torch.arange(self.vocab_size + 1))
        out = []
        for _ in range(n_sequences):
            q0 = self.escape_first[:, None] * self.share
            dist = (1 - self.escape) * self.start + self.escape * q0
            s = int(torch.multinomial(dist.flatten().double(), 1, generator=g))
            tok, clone = divmod(s, n)
            seq = [tok]
            while len(seq) < max_len and (eos_id is None or tok != eos_id):
                a, b = int(first[tok]), int(first[tok + 1])
                if a < b and float(torch.rand(1, generator=g)) >= self.escape:
                    row = self.blocks[a:b, clone, :].flatten().double()
                    j = int(torch.multinomial(row, 1, generator=g))
                    tok, clone = int(self.bigrams[a + j // n] % self.vocab_size), j % n
                else:
                    tok = int(torch.multinomial(self.escape_next[tok].double(), 1, generator=g))
                    clone = int(torch.multinomial(self.share[tok].double(), 1, generator=g))
                seq.append(tok)
            out.append(np.array(seq))
        return out

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path, config: dict | None = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(
                {
                    "kind": "cloned_hmm",
                    "bigrams": self.bigrams,
                    "blocks": self.blocks,
                    "start": self.start,
                    "escape_next": self.escape_next,
                    "escape_first": self.escape_first,
                    "clones": self.clones,
                    "escape": self.escape,
                    "escape_parameters": self.escape_parameters,
                    "config": config or {},
                },
                tmp,
            )

    @classmethod
    def load(cls, path) -> tuple[ClonedHMM, dict]:
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise HmmLangError(
                f"cannot read cloned HMM file {path} ({type(e).__name__}); refit it"
            ) from None
        if not isinstance(d, dict) or d.get("kind") != "cloned_hmm":
            raise HmmLangError(f"{path} is not a saved ClonedHMM")
        if "escape_next" not in d:
            raise HmmLangError(f"{path} was saved by an older hmm_lang (unigram escape); refit it")
        for name in ("blocks", "start", "escape_next", "escape_first"):
            t = d[name]
            if not torch.isfinite(t).all() or (t < 0).any():
                raise HmmLangError(f"cloned HMM {path}: {name} holds NaN or negative values")
        model = cls(
            d["bigrams"],
            d["blocks"],
            d["start"],
            d["escape_next"],
            d["escape_first"],
            d["clones"],
            d["escape"],
            int(d.get("escape_parameters", 0)),
        )
        return model, d.get("config", {})


def with_zero_block(blocks: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B + 1, n, n) ``blocks`` cast to ``dtype``, then one all-zero block (an unseen bigram's)."""
    table = torch.empty((blocks.shape[0] + 1, *blocks.shape[1:]), dtype=dtype)
    table[:-1] = blocks
    table[-1] = 0
    return table


PRIOR_CHUNK = 4096  # blocks per slice in log_prior
