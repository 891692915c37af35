"""Start and fit blocked-emission HMMs under the fit protocol (every choice on the dev split).

The start spreads each seen cluster bigram's count over its (n x n) block and each token's count
over its cluster's n states, with multiplicative noise (1 + noise * U(0, 1)) that breaks the
symmetry between a cluster's states. Training is EM on the blocked statistics
(``train="em"``) or AdamW on the marginal likelihood through a compact parameterisation with
state dropout (``train="grad"``, :mod:`hmm_lang.hmm.blocked_grad`). The clustering (``exchange``
or ``context``, or ``auto``: both, the better on dev), the final pseudocount and the escape mass
are chosen on dev, as for cloned HMMs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.blocked import BlockedHMM, BlockedStats, cluster_layout
from hmm_lang.hmm.cloned_init import escape_distributions
from hmm_lang.hmm.clusters import token_clusters
from hmm_lang.hmm.fit import (
    FitResult,
    HMMFitConfig,
    _sequences,
    em_checkpoint_path,
)
from hmm_lang.hmm.fit_cloned import em_then_tune, finish_fit
from hmm_lang.pretokenize import TokenStream

log = logging.getLogger(__name__)

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


def blocked_em(fit_seqs, dev_seqs, v, cluster, cfg, eos_id, progress, checkpoint=None):
    """One blocked-HMM fit by EM at one clustering: EM to dev convergence, then the pseudocount
    and the escape mass chosen on dev. Returns (dev ll, model, EMResult, choices, bt, lane)."""

    model = init_blocked_hmm(
        fit_seqs, v, cluster, cfg.states // cfg.clusters, cfg.escape, cfg.seed,
        escape_model=cfg.escape_model, eos_id=eos_id,
    )  # fmt: skip
    out = em_then_tune(
        model, model.block_size**2, fit_seqs, dev_seqs, cfg, "blocked EM", progress, checkpoint
    )
    log.info("blocked HMM: pseudocount %s, escape %g chosen on dev", *out[3].values())
    return out


def fit_blocked(
    train: TokenStream,
    valid: TokenStream | None,
    cfg: HMMFitConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> FitResult:
    """Blocked HMM with ``cfg.states`` states in ``cfg.clusters`` clusters: clustering (or both
    with ``auto``) and training choices on dev; validation scored once at the end. With
    ``checkpoint`` (see ``fit_hmm``), EM training resumes; gradient training starts over."""
    t0 = time.perf_counter()
    fit_seqs, dev_seqs, dev_bytes = _sequences(train, valid, cfg)
    v = train.vocab_size
    methods = ("exchange", "context") if cfg.clustering == "auto" else (cfg.clustering,)
    best = None
    resumed = 0.0  # wall seconds of EM spent before a resume, in an earlier process
    for method in methods:
        tc = time.perf_counter()
        cluster = token_clusters(method, fit_seqs, v, cfg.clusters, cfg.seed)
        log.info("%s clustering: %.1f s", method, time.perf_counter() - tc)
        if cfg.train == "grad":
            from hmm_lang.hmm.blocked_grad import blocked_grad

            out = blocked_grad(fit_seqs, dev_seqs, v, cluster, cfg, train.eos_id, progress)
        else:
            ckpt = em_checkpoint_path(checkpoint, method)
            out = blocked_em(fit_seqs, dev_seqs, v, cluster, cfg, train.eos_id, progress, ckpt)
            resumed += out[2].resumed_seconds
        log.info("clustering %s: dev %.4f nats/token", method, -out[0] / sum(map(len, dev_seqs)))
        if best is None or out[0] > best[1][0]:
            best = (method, out)
    method, out = best
    extra = {"clustering": method, "train": cfg.train, "escape_model": cfg.escape_model}
    return finish_fit(out, extra, valid, fit_seqs, dev_seqs, dev_bytes, t0 - resumed)
