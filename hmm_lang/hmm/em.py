"""Batch EM with Dirichlet smoothing and dev-split early stopping, for any HMM family.

The loop is hmmlearn's (E-step, M-step, monitor report), with typed statistics instead of
string keys. :func:`run_em` takes the family's E-step, M-step and dev scorer as functions, so
dense and cloned HMMs share one loop, one stop rule and one record of the curves. The smoothing
pseudocount ``c`` added to every count is MAP estimation under a Dirichlet(1 + c) prior, so the
monitored training objective is log-likelihood + c * sum(log parameters), which EM never
decreases. Which parameters are kept is decided on the dev split alone.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from tqdm.auto import tqdm

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.batching import LaneBatch
from hmm_lang.hmm.em_checkpoint import EMState, load_em_state, save_em_state
from hmm_lang.hmm.inference import HMMStats, expected_counts, log_likelihood
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.hmm.monitor import ConvergenceMonitor, IterationRecord

log = logging.getLogger(__name__)

Reducer = Callable[[HMMStats], HMMStats]
# seconds between saves of the EM state: a dense K=1024 state is ~120 MB, a 65,536-state cloned
# one up to 11 GB (V=2048, frequency allocation), so not every iteration; a kill loses at most
# about this much work
CHECKPOINT_SECONDS = 300.0
M = TypeVar("M")


def e_step(
    hmm: CategoricalHMM, batches: Sequence[LaneBatch], reduce: Reducer | None = None
) -> HMMStats:
    """Expected counts summed over ``batches`` (float64), then over processes by ``reduce``."""
    total = HMMStats.zeros(hmm.n_states, hmm.vocab_size, device=hmm.device)
    with torch.no_grad():
        for batch in batches:
            total.add_(expected_counts(hmm, batch))
    return reduce(total) if reduce is not None else total


def m_step(stats: HMMStats, smoothing: float = 0.0, dtype=torch.float32) -> CategoricalHMM:
    """Normalised counts plus ``smoothing`` (a Dirichlet pseudocount on every cell)."""

    def normalize(counts: torch.Tensor) -> torch.Tensor:
        c = counts + smoothing
        s = c.sum(-1, keepdim=True)
        # a row that saw no counts (and no smoothing) stays uniform rather than NaN
        c = torch.where(s > 0, c, torch.ones_like(c))
        return (c / c.sum(-1, keepdim=True)).to(dtype)

    return CategoricalHMM(normalize(stats.start), normalize(stats.trans), normalize(stats.emit))


def log_prior(hmm: CategoricalHMM, smoothing: float) -> float:
    """Dirichlet(1 + smoothing) log density of the parameters, up to a constant."""
    if smoothing == 0:
        return 0.0
    return smoothing * sum(float(torch.log(t.double()).sum()) for t in hmm.tensors())


@dataclass
class EMResult(Generic[M]):
    hmm: M  # the parameters kept: best dev likelihood (the last ones without a dev split)
    monitor: ConvergenceMonitor
    best_iteration: int  # index of the kept parameters in the history (len(history): after it)
    stop_reason: str
    stats: Any = None  # the E-step statistics whose M-step gave ``hmm`` (None: the start)
    resumed_seconds: float = 0.0  # wall seconds spent before a resume (0: not resumed)

    @property
    def iterations(self) -> int:
        return len(self.monitor.history)


def run_em(
    model: M,
    e_step_fn: Callable[[M], Any],
    m_step_fn: Callable[[Any], M],
    dev_fn: Callable[[M], tuple[float, int]] | None = None,
    prior_fn: Callable[[M], float] | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
    patience: int = 3,
    desc: str = "EM",
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: float | None = None,
) -> EMResult[M]:
    """EM from ``model`` until the dev likelihood stops improving (see
    :class:`ConvergenceMonitor`). ``e_step_fn(model)`` returns statistics with
    ``log_likelihood`` and ``n_tokens``; ``m_step_fn(stats)`` the next model; ``dev_fn(model)``
    the dev log-likelihood (nats) and token count. With ``checkpoint``, the EM state is saved
    there after an M-step once ``checkpoint_every`` seconds (default ``CHECKPOINT_SECONDS``)
    have passed since the last save (a kill loses at most about that much), and a state found
    there at the start is continued
    (:mod:`hmm_lang.hmm.em_checkpoint`; the path must name this one fit)."""
    if max_iter < 1:
        raise HmmLangError(f"--max-iters must be at least 1, got {max_iter}")
    monitor = ConvergenceMonitor(tol=tol, max_iter=max_iter, patience=patience)
    produced_by = None  # statistics whose M-step gave `model`
    kept = (model, None, 0)
    resumed_seconds = 0.0
    state = load_em_state(checkpoint) if checkpoint is not None else None
    if state is not None:
        model, produced_by, kept, resumed_seconds = (
            state.model, state.produced_by, state.kept, state.seconds
        )  # fmt: skip
        for record in state.history:  # replayed: the stop counters come back as they were
            monitor.report(record)
        log.info("%s: resuming after iteration %d from %s", desc, len(state.history), checkpoint)
        state = None  # its tables live on only where EM still needs them (GBs at 65,536 states)
    every = CHECKPOINT_SECONDS if checkpoint_every is None else checkpoint_every
    t_start = t_saved = time.perf_counter()
    bar = tqdm(
        total=max_iter,
        initial=len(monitor.history),
        desc=desc,
        unit="iter",
        disable=not progress,
        leave=False,
    )
    while True:
        t0 = time.perf_counter()
        dev = dev_fn(model) if dev_fn is not None else None
        if dev is not None and not dev[0] > monitor.best_dev:
            # `model` will not be kept: free the statistics that made it before the E-step
            # builds new ones (a 65,536-state cloned table is GBs; three at once ran out of RAM)
            produced_by = None
        stats = None  # the previous statistics live on only through produced_by / kept
        stats = e_step_fn(model)
        if not math.isfinite(stats.log_likelihood):
            raise HmmLangError(
                f"{desc}: the training log-likelihood is {stats.log_likelihood} at iteration "
                f"{len(monitor.history)}; use a positive smoothing pseudocount"
            )
        it = len(monitor.history)
        record = IterationRecord(
            it, stats.log_likelihood, prior_fn(model) if prior_fn else 0.0, stats.n_tokens, 0.0
        )
        if dev is not None:
            record.dev_log_likelihood, record.dev_tokens = dev
        record.seconds = time.perf_counter() - t0
        monitor.report(record)
        if monitor.best_iteration == it:
            kept = (model, produced_by, it)
        bar.update(1)
        post = {"train": f"{record.train_nats_per_token:.4f}"}
        if record.dev_nats_per_token is not None:
            post["dev"] = f"{record.dev_nats_per_token:.4f}"
        post["tok_s"] = f"{stats.n_tokens / max(record.seconds, 1e-9):,.0f}"
        bar.set_postfix(post)
        reason = monitor.stop_reason
        if reason is not None:
            break
        model, produced_by = m_step_fn(stats), stats
        if checkpoint is not None and time.perf_counter() - t_saved >= every:
            spent = resumed_seconds + time.perf_counter() - t_start
            save_em_state(checkpoint, EMState(model, produced_by, kept, monitor.history, spent))
            t_saved = time.perf_counter()
    bar.close()
    if dev_fn is None:  # nothing to select on: the parameters after the last M-step
        kept = (m_step_fn(stats), stats, len(monitor.history))
    best, best_stats, best_it = kept
    log.info("%s: %d iterations, stop: %s, kept iteration %d", desc, it + 1, reason, best_it)
    return EMResult(copy.copy(best), monitor, best_it, reason, best_stats, resumed_seconds)


def fit_em(
    hmm: CategoricalHMM,
    train: Sequence[LaneBatch],
    dev: Sequence[LaneBatch] | None = None,
    max_iter: int = 200,
    tol: float = 1e-4,
    smoothing: float = 1e-3,
    patience: int = 3,
    reduce: Reducer | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> EMResult[CategoricalHMM]:
    """Baum-Welch for a dense HMM from ``hmm``; with ``dev``, keep the parameters with the best
    dev likelihood and stop when it stops improving (``checkpoint``: see :func:`run_em`)."""
    dtype = hmm.start.dtype
    return run_em(
        hmm,
        lambda m: e_step(m, train, reduce),
        lambda s: m_step(s, smoothing, dtype=dtype),
        (lambda m: log_likelihood(m, dev)) if dev is not None else None,
        lambda m: log_prior(m, smoothing),
        max_iter=max_iter,
        tol=tol,
        patience=patience,
        desc=f"EM K={hmm.n_states}",
        progress=progress,
        checkpoint=checkpoint,
    )
