"""Gradient training of blocked HMMs through a compact parameterisation (Chiu & Rush 2020).

Instead of free tables, the tables come from embeddings: a state embedding e_(c,i) (M, n, d)
passes through a residual MLP, then three heads give the source u, destination w and emission h
vectors; tokens have embeddings g_v. With a learned bias per seen cluster pair,
    T[(a, i), (b, j)] = softmax over every (b', j) in the seen blocks of a of  u_(a,i) . w_(b,j) + bias_(a,b)
    B[(c, i), v]      = softmax over the members v of c of  h_(c,i) . g_v + bias_v
    start             = softmax of free logits.
Parameters: O((K + V) d + P) instead of O(P n^2). The escape stays as in :mod:`blocked`.

The gradient of the marginal log-likelihood is computed without backpropagating through time:
by Fisher's identity, d log P(x) / d theta = sum over table cells of E[count | x] * d log cell /
d theta, so each step runs the blocked E-step (exact expected counts) on a minibatch and
backpropagates the surrogate -sum counts * log cell through the parameterisation only.

State dropout: each step keeps a random ``1 - dropout`` share of every cluster's states and
trains the smaller blocked HMM they form (its softmaxes run over the kept states only), which
regularises and makes the step cheaper. Evaluation uses every state.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hmm_lang.hmm.batching import pack_lanes
from hmm_lang.hmm.blocked import BlockedHMM, BlockedStats
from hmm_lang.hmm.blocked_init import init_blocked_hmm
from hmm_lang.hmm.em import EMResult
from hmm_lang.hmm.fit_cloned import tune_on_dev
from hmm_lang.hmm.fit_setup import ESCAPE_GRID, batch_tokens_for, lane_len_for
from hmm_lang.hmm.monitor import ConvergenceMonitor, IterationRecord

log = logging.getLogger(__name__)


class BlockedParameterisation(nn.Module):
    """Tables of a blocked HMM from embeddings (see the module docstring)."""

    def __init__(self, template: BlockedHMM, dim: int = 128, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        m, n, v = template.n_clusters, template.block_size, template.vocab_size
        self.template = template  # structure: clusters, pairs, escape model (not trained)
        self.state = nn.Parameter(torch.randn(m, n, dim, generator=g))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.heads = nn.Linear(dim, 3 * dim)
        self.token = nn.Parameter(torch.randn(v, dim, generator=g) / math.sqrt(dim))
        # start each state's emissions at its cluster's token frequencies (the EM start's
        # mean), not uniform: the embeddings then learn how states differ
        mean_emit = template.emit.double().mean(1)[template.cluster, template.position]
        self.token_bias = nn.Parameter(torch.log(mean_emit.clamp(min=1e-12)).float())
        # start the pair biases at log of the start model's block mass: class-bigram counts
        src = (template.pairs // m).long()
        mass = template.blocks.double().sum((1, 2)) / n
        self.pair_bias = nn.Parameter(torch.log(mass.clamp(min=1e-12)).float())
        self.start_logits = nn.Parameter(torch.log(template.start.clamp(min=1e-12)).float())
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", (template.pairs % m).long(), persistent=False)
        self.register_buffer("pos", template.position, persistent=False)
        self.register_buffer("member", template.member_mask, persistent=False)
        members = torch.zeros(template.member_mask.shape, dtype=torch.long)
        members[template.cluster, template.position] = torch.arange(v)
        self.register_buffer("members", members, persistent=False)
        self.dim = dim

    def log_tables(self, keep: torch.Tensor | None = None):
        """(log blocks (P, k, k), log start (M, k), log emit (M, k, W)) over the states
        ``keep`` (M, k) of each cluster (all states when None)."""
        e = self.state
        if keep is not None:
            e = torch.gather(e, 1, keep[..., None].expand(-1, -1, e.shape[-1]))
        e = e + self.mlp(e)
        u, w, h = self.heads(e).split(self.dim, dim=-1)  # (M, k, d) each
        logits = torch.einsum("pid,pjd->pij", u[self.src], w[self.dst]) / math.sqrt(self.dim)
        logits = logits + self.pair_bias[:, None, None]
        lse = torch.logsumexp(logits, 2)  # (P, k)
        m, k = e.shape[0], e.shape[1]
        top = torch.full((m, k), -torch.inf, dtype=lse.dtype).scatter_reduce(
            0, self.src[:, None].expand(-1, k), lse, "amax", include_self=True
        )
        total = torch.zeros(m, k, dtype=lse.dtype).index_add(
            0, self.src, torch.exp(lse - top[self.src])
        )
        row = top + torch.log(total)  # (M, k) log-normaliser of each source state
        log_blocks = logits - row[self.src][:, :, None]
        start = self.start_logits if keep is None else torch.gather(self.start_logits, 1, keep)
        log_start = torch.log_softmax(start.flatten(), 0).view(m, k)
        tok = self.token[self.members]  # (M, W, d)
        em = torch.einsum("mkd,mwd->mkw", h, tok) / math.sqrt(self.dim)
        em = em + self.token_bias[self.members][:, None, :]
        em = em.masked_fill(~self.member[:, None, :], -torch.inf)
        return log_blocks, log_start, torch.log_softmax(em, -1)

    def model(self, keep: torch.Tensor | None = None) -> BlockedHMM:
        """The blocked HMM these parameters give (on the kept states), detached."""
        with torch.no_grad():
            lb, ls, le = self.log_tables(keep)
        t = self.template
        return BlockedHMM(
            t.cluster, t.pairs, lb.exp(), ls.exp(), le.exp(), t.escape_next, t.escape_first,
            t.escape, t.escape_parameters,
        )  # fmt: skip

    def surrogate(self, stats: BlockedStats, keep: torch.Tensor | None = None) -> torch.Tensor:
        """-sum counts * log cell: its gradient is minus the marginal log-likelihood's."""
        lb, ls, le = self.log_tables(keep)
        le = torch.where(self.member[:, None, :], le, 0.0)
        return -(
            (stats.blocks.to(lb.dtype) * lb).sum()
            + (stats.start.to(lb.dtype) * ls).sum()
            + (stats.emit.to(lb.dtype) * le).sum()
        )

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


STEPS_PER_EPOCH = 32  # AdamW steps per pass over the training stories


def _keep(m: int, n: int, dropout: float, g: torch.Generator) -> torch.Tensor:
    k = max(1, round(n * (1 - dropout)))
    return torch.rand(m, n, generator=g).argsort(1)[:, :k].sort(1).values


def blocked_grad(fit_seqs, dev_seqs, v, cluster, cfg, eos_id, progress):
    """AdamW on the marginal likelihood, one dev evaluation per epoch, stop on dev convergence.
    Returns (dev ll, model, result, choices, bt, lane) like :func:`fit_blocked.blocked_em`."""
    torch.manual_seed(cfg.seed)
    n = cfg.states // cfg.clusters
    start = init_blocked_hmm(
        fit_seqs, v, cluster, n, cfg.escape, cfg.seed, escape_model=cfg.escape_model, eos_id=eos_id
    )
    params = BlockedParameterisation(start, cfg.embed_dim, cfg.seed)
    opt = torch.optim.AdamW(params.parameters(), lr=cfg.lr, weight_decay=0.01)
    lane = lane_len_for(cfg, fit_seqs)
    bt = batch_tokens_for(cfg, n**2, lane)
    # minibatches: STEPS_PER_EPOCH steps per pass (at least 32 lanes each)
    rng = np.random.default_rng(cfg.seed)
    dev_b = pack_lanes(dev_seqs, bt, lane)
    # the epoch's training likelihood is taken under moving parameters and dropout: it may
    # fall without anything being wrong, so no decrease warnings
    monitor = ConvergenceMonitor(
        tol=cfg.tol, max_iter=cfg.max_iters, patience=cfg.patience, decrease_tol=math.inf
    )
    g = torch.Generator().manual_seed(cfg.seed)
    best_state, best_it = None, 0
    step_tokens = max(32 * lane, sum(map(len, fit_seqs)) // STEPS_PER_EPOCH)
    bar = tqdm(total=cfg.max_iters, desc=f"blocked grad K={cfg.states}", disable=not progress)
    while True:
        t0 = time.perf_counter()
        order = rng.permutation(len(fit_seqs))
        chunks, cur, size = [], [], 0
        for i in order:
            cur.append(fit_seqs[i])
            size += len(fit_seqs[i])
            if size >= step_tokens:
                chunks.append(cur)
                cur, size = [], 0
        chunks += [cur] if cur else []
        train_ll, train_tok = 0.0, 0
        for chunk in chunks:
            keep = _keep(cfg.clusters, n, cfg.state_dropout, g) if cfg.state_dropout else None
            model = params.model(keep)
            batch = pack_lanes(chunk, bt, lane)
            stats = None
            for b in batch:  # one batch built at a time
                s = model.expected_counts(b)
                stats = s if stats is None else stats.add_(s)
            opt.zero_grad()
            (params.surrogate(stats, keep) / stats.n_tokens).backward()
            opt.step()
            train_ll += stats.log_likelihood
            train_tok += stats.n_tokens
        it = len(monitor.history)
        record = IterationRecord(it, train_ll, 0.0, train_tok, 0.0)
        record.dev_log_likelihood, record.dev_tokens = params.model().log_likelihood(dev_b)
        record.seconds = time.perf_counter() - t0
        monitor.report(record)
        if monitor.best_iteration == it:
            best_state, best_it = {k: t.clone() for k, t in params.state_dict().items()}, it
        bar.update(1)
        bar.set_postfix(
            train=f"{record.train_nats_per_token:.4f}", dev=f"{record.dev_nats_per_token:.4f}"
        )
        if monitor.stop_reason is not None:
            break
    bar.close()
    params.load_state_dict(best_state)
    ll, chosen, _, eps = tune_on_dev(
        params.model(), None, dev_b, [None], sorted(set(ESCAPE_GRID) | {cfg.escape})
    )
    log.info(
        "blocked grad: %d epochs, stop %s, escape %g chosen on dev",
        it + 1,
        monitor.stop_reason,
        eps,
    )
    res = EMResult(chosen, monitor, best_it, monitor.stop_reason, None)
    choices = {"escape": eps, "lr": cfg.lr, "state_dropout": cfg.state_dropout,
               "embed_dim": cfg.embed_dim, "compact_parameters": params.n_parameters}  # fmt: skip
    return ll, chosen, res, choices, bt, lane
