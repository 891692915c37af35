"""Fit cloned HMMs under the fit protocol: EM to dev convergence, then the pseudocount, the
escape mass and (with allocation ``auto``) the clone allocation chosen on dev."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from hmm_lang.hmm.batching import pack_lanes
from hmm_lang.hmm.cloned_init import allocate_clones, init_cloned_hmm
from hmm_lang.hmm.em import run_em
from hmm_lang.hmm.fit_setup import (
    ESCAPE_GRID,
    SMOOTHING_GRID,
    FitResult,
    HMMFitConfig,
    batch_tokens_for,
    em_checkpoint_path,
    lane_len_for,
    score_valid,
    split_fit_dev,
)
from hmm_lang.pretokenize import TokenStream
from hmm_lang.scoring import score

log = logging.getLogger(__name__)


def tune_on_dev(model, stats, dev_b, smoothings, escapes):
    """The final M-step redone at each pseudocount (``stats`` None: ``model`` as it is), each
    with every escape mass; the best pair on dev, as (dev log-likelihood, model, pseudocount,
    escape). For cloned and blocked HMMs."""
    best = None
    for c in smoothings if stats is not None else [None]:
        cand = model if stats is None else model.m_step(stats, c)
        for eps in escapes:
            cand.escape = eps  # the escape mass is read per pass; no cached state depends on it
            ll = cand.log_likelihood(dev_b)[0]
            if best is None or ll > best[0]:  # the first of equals, as max() would
                best = (ll, c, eps, cand)
        cand = None  # only the best candidate is kept: each is GBs at 65,536 states
    ll, c, eps, chosen = best
    chosen.escape = eps
    return ll, chosen, c, eps


def _cloned_em(fit_seqs, dev_seqs, v, clones, cfg: HMMFitConfig, eos_id, progress, checkpoint):
    """One cloned-HMM fit at one allocation: EM to dev convergence, then the pseudocount and
    the escape mass chosen together on dev."""
    model = init_cloned_hmm(
        fit_seqs,
        v,
        clones,
        escape=cfg.escape,
        seed=cfg.seed,
        escape_model=cfg.escape_model,
        eos_id=eos_id,
    )
    # cloned steps hold (N, n, n) blocks: size the batch as for n^2 dense states
    out = em_then_tune(
        model, model.max_clones**2, fit_seqs, dev_seqs, cfg, "cloned EM", progress, checkpoint
    )
    log.info("cloned HMM: pseudocount %s, escape %g chosen on dev", *out[3].values())
    return out


def em_then_tune(
    model,
    block_states: int,
    fit_seqs,
    dev_seqs,
    cfg: HMMFitConfig,
    desc,
    progress,
    checkpoint: Path | None = None,
):
    """EM on a cloned or blocked HMM (any model with ``expected_counts``, ``m_step``,
    ``log_likelihood``, ``log_prior``) until dev stops improving, then the pseudocount and the
    escape mass chosen together on dev. ``block_states`` sizes the batches (the (N, n, n)
    blocks a step holds, as for that many dense states); ``checkpoint``: see :func:`run_em`.

    Returns (dev log-likelihood, model, EMResult, {smoothing, escape}, batch tokens, lane)."""
    lane = lane_len_for(cfg, fit_seqs)
    bt = batch_tokens_for(cfg, block_states, lane)
    batches = pack_lanes(fit_seqs, bt, lane)
    dev_b = pack_lanes(dev_seqs, bt, lane)

    def e_step(m):
        stats = None
        for b in batches:  # one batch built at a time (PackedBatches is lazy on large data)
            stats = m.expected_counts(b, into=stats)  # summed in place: one table, not two
        return stats

    res = run_em(
        model,
        e_step,
        lambda s: model.m_step(s, cfg.smoothing),
        lambda m: m.log_likelihood(dev_b),
        lambda m: m.log_prior(cfg.smoothing),
        max_iter=cfg.max_iters,
        tol=cfg.tol,
        patience=cfg.patience,
        desc=f"{desc} S={model.n_states}",
        progress=progress,
        checkpoint=checkpoint,
    )
    smoothings = sorted(set(SMOOTHING_GRID) | {cfg.smoothing})
    ll, chosen, c, eps = tune_on_dev(
        res.hmm,
        res.stats if cfg.tune_smoothing or res.stats is None else None,
        dev_b,
        smoothings,
        sorted(set(ESCAPE_GRID) | {cfg.escape}),
    )
    if res.stats is not None and not cfg.tune_smoothing:
        c = cfg.smoothing
    return ll, chosen, res, {"smoothing": c, "escape": eps}, bt, lane


def fit_cloned(
    train: TokenStream,
    valid: TokenStream | None,
    cfg: HMMFitConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> FitResult:
    """Cloned HMM: EM to dev convergence; pseudocount, escape mass and (with allocation auto)
    uniform or frequency allocation chosen on dev (``checkpoint``: see ``fit_hmm``)."""
    t0 = time.perf_counter()
    fit_seqs, dev_seqs, dev_bytes = split_fit_dev(train, valid, cfg)
    v = train.vocab_size
    allocations = ("uniform", "frequency") if cfg.allocation == "auto" else (cfg.allocation,)
    best = None
    resumed = 0.0  # wall seconds of EM spent before a resume, in an earlier process
    for alloc in allocations:
        if alloc == "frequency":
            # as many states as the uniform allocation, up to 2x the clones for frequent tokens
            counts = np.bincount(np.concatenate(fit_seqs), minlength=v)
            clones = allocate_clones(counts, v * cfg.clones, 2 * cfg.clones)
        else:
            clones = cfg.clones
        ckpt = em_checkpoint_path(checkpoint, alloc)
        out = _cloned_em(fit_seqs, dev_seqs, v, clones, cfg, train.eos_id, progress, ckpt)
        resumed += out[2].resumed_seconds
        log.info("allocation %s: dev %.4f nats/token", alloc, -out[0] / sum(map(len, dev_seqs)))
        if best is None or out[0] > best[1][0]:
            best = (alloc, out)
    alloc, out = best
    extra = {"allocation": alloc, "escape_model": cfg.escape_model}
    return finish_fit(out, extra, valid, fit_seqs, dev_seqs, dev_bytes, t0 - resumed)


def finish_fit(out, extra: dict, valid, fit_seqs, dev_seqs, dev_bytes: int, t0: float):
    """The kept fit ``out`` (as :func:`em_then_tune` returns it) with validation scored once,
    here, at the end, as a :class:`FitResult`; ``extra`` joins its dev choices. ``t0``: when
    the fit started (moved back by the seconds an earlier, resumed process spent)."""
    ll, model, res, choices, bt, lane = out
    valid_score, story_nats = score_valid(model, valid, bt, lane)
    return FitResult(
        model,
        res.monitor.as_dicts(),
        score(ll, sum(map(len, dev_seqs)), dev_bytes),
        valid_score,
        time.perf_counter() - t0,
        sum(len(s) for s in fit_seqs),
        res.stop_reason,
        res.iterations,
        res.best_iteration,
        choices | extra,
        story_nats,
    )
