"""Fit HMMs to pretokenized streams under one protocol, and score them in bits per byte.

Protocol: a dev split (``dev_fraction`` of the training stories, seeded by ``dev_seed``) is
carved off the training stories; EM runs on the rest until the dev likelihood stops improving
(``tol`` nats/token for ``patience`` iterations, at most ``max_iters``); the kept iteration,
the restart, the final pseudocount (and for cloned HMMs the escape mass and the clone
allocation) are chosen on dev. The validation stream, when given, is scored once at the end
and never read before: two fits that differ only in it give identical parameters.

This is what ``hmm-lang fit-hmm``, the ladder, the run pipeline and the notebooks call.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.batching import pack_lanes
from hmm_lang.hmm.distributed import all_reduce_stats, rank_and_world, shard
from hmm_lang.hmm.em import EMResult, fit_em, m_step
from hmm_lang.hmm.fit_setup import (  # noqa: F401 (the public names of a fit, re-exported)
    ALLOCATIONS,
    ESCAPE_GRID,
    LANES,
    SMOOTHING_GRID,
    FitResult,
    HMMFitConfig,
    batch_tokens_for,
    check_fit_memory,
    em_checkpoint_path,
    fit_settings,
    lane_len_for,
    score_valid,
    split_fit_dev,
)
from hmm_lang.hmm.inference import log_likelihood
from hmm_lang.hmm.init import INITS, initial_hmm  # noqa: F401 (INITS: re-exported)
from hmm_lang.hmm.monitor import STOP_MAX_ITERS
from hmm_lang.hmm.online import fit_online, minibatches
from hmm_lang.pretokenize import TokenStream
from hmm_lang.scoring import score

log = logging.getLogger(__name__)


def _tune_smoothing(res: EMResult, dev_b, cfg: HMMFitConfig):
    """The final M-step redone with each pseudocount of the grid; the best on dev, as
    (model, pseudocount, dev log-likelihood)."""
    if res.stats is None:  # the start itself was kept: no pseudocount was used
        return res.hmm, None, res.monitor.best_dev
    if not cfg.tune_smoothing:
        return res.hmm, cfg.smoothing, res.monitor.best_dev
    dtype = res.hmm.start.dtype
    tried = []
    for c in sorted(set(SMOOTHING_GRID) | {cfg.smoothing}):
        cand = m_step(res.stats, c, dtype=dtype)
        tried.append((log_likelihood(cand, dev_b)[0], c, cand))
    ll, c, best = max(tried, key=lambda t: t[0])
    log.info("pseudocount chosen on dev: %g", c)
    return best, c, ll


def fit_dense(
    train: TokenStream,
    valid: TokenStream | None,
    cfg: HMMFitConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> FitResult:
    """Dense HMM: start, restarts, batch (or online) EM, all choices on the dev split.
    ``checkpoint``: a path prefix for mid-fit EM state (see :func:`fit_hmm`)."""
    t0 = time.perf_counter()
    check_fit_memory(cfg, train.vocab_size)
    fit_seqs, dev_seqs, dev_bytes = split_fit_dev(train, valid, cfg)
    rank, world = rank_and_world()
    local = shard(fit_seqs, rank, world)
    # ragged lanes: on small data, the few long stories do not set every lane's length
    lane = lane_len_for(cfg, fit_seqs, ragged=True)
    bt = batch_tokens_for(cfg, cfg.states, max(len(s) for s in fit_seqs))
    train_b = pack_lanes(local, bt, lane, ragged=True)
    dev_b = pack_lanes(dev_seqs, bt, lane, ragged=True)
    best = None
    resumed = 0.0  # wall seconds of EM spent before a resume, in an earlier process
    for r in range(cfg.restarts):
        hmm = initial_hmm(
            cfg.init, fit_seqs, cfg.states, train.vocab_size, seed=cfg.seed + r, run=cfg.run
        )
        hmm = hmm.to(device=cfg.device)
        if cfg.online:
            batches = minibatches(local, cfg.minibatch_stories, cfg.seed + r, cfg.max_iters)
            hmm, monitor = fit_online(
                hmm,
                batches,
                corpus_tokens=sum(len(s) for s in fit_seqs),
                alpha=cfg.online_alpha,
                smoothing=cfg.smoothing,
                reduce=all_reduce_stats,
                batch_tokens=bt,
            )
            smoothing, reason, best_it = cfg.smoothing, STOP_MAX_ITERS, len(monitor.history)
            ll, _ = log_likelihood(hmm, dev_b)
        else:
            res = fit_em(
                hmm,
                train_b,
                dev_b,
                max_iter=cfg.max_iters,
                tol=cfg.tol,
                smoothing=cfg.smoothing,
                patience=cfg.patience,
                reduce=all_reduce_stats,
                progress=progress,
                checkpoint=em_checkpoint_path(checkpoint, f"restart{r}"),
            )
            resumed += res.resumed_seconds
            hmm, smoothing, ll = _tune_smoothing(res, dev_b, cfg)
            monitor, reason, best_it = res.monitor, res.stop_reason, res.best_iteration
        log.info("restart %d: dev %.4f nats/token", r, -ll / sum(len(s) for s in dev_seqs))
        if best is None or ll > best[0]:
            best = (ll, hmm, monitor, reason, best_it, {"smoothing": smoothing, "restart": r})
    ll, hmm, monitor, reason, best_it, choices = best
    hmm = hmm.to(device="cpu")
    valid_score, story_nats = score_valid(hmm, valid, bt, lane, ragged=True)
    return FitResult(
        hmm,
        monitor.as_dicts(),
        score(ll, sum(map(len, dev_seqs)), dev_bytes),
        valid_score,
        time.perf_counter() - t0 + resumed,
        sum(len(s) for s in fit_seqs),
        reason,
        len(monitor.history),
        best_it,
        choices | {"init": cfg.init},
        story_nats,
    )


def fit_hmm(
    train: TokenStream,
    valid: TokenStream | None = None,
    cfg: HMMFitConfig | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> FitResult:
    """Fit a dense, cloned (``cfg.cloned``) or blocked (``cfg.blocked``) HMM to ``train``;
    score ``valid`` once at the end.

    ``checkpoint``: a path prefix; each EM run of the fit saves its state after every iteration
    as ``<prefix>.<run>.pt``, and a fit started again with the same prefix continues from
    there. The prefix must name this fit (same data, config and code); the files stay until
    the caller removes them."""
    cfg = cfg or HMMFitConfig()
    if cfg.blocked:
        from hmm_lang.hmm.fit_blocked import fit_blocked

        cfg.validate()
        if cfg.clusters > train.vocab_size:
            raise HmmLangError(
                f"--clusters {cfg.clusters} exceeds the vocab size {train.vocab_size}"
            )
        return fit_blocked(train, valid, cfg, progress, checkpoint)
    if cfg.cloned:
        from hmm_lang.hmm.fit_cloned import fit_cloned

        return fit_cloned(train, valid, cfg, progress, checkpoint)
    return fit_dense(train, valid, cfg, progress, checkpoint)
