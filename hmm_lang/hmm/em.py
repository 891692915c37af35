"""Batch Baum-Welch EM with Dirichlet smoothing, early stopping and data-parallel statistics.

The loop is hmmlearn's (E-step, M-step, monitor report), with typed statistics
(:class:`HMMStats`) instead of string keys. The smoothing pseudocount ``c`` added to every
count is MAP estimation under a Dirichlet(1 + c) prior, so the monitored objective is
log-likelihood + c * sum(log parameters), which EM never decreases.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from hmm_lang.hmm.batching import LaneBatch
from hmm_lang.hmm.inference import HMMStats, expected_counts, log_likelihood
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.hmm.monitor import ConvergenceMonitor, IterationRecord

log = logging.getLogger(__name__)

Reducer = Callable[[HMMStats], HMMStats]


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
class EMResult:
    hmm: CategoricalHMM  # the best parameters (by validation likelihood if given)
    monitor: ConvergenceMonitor
    best_iteration: int


def fit_em(
    hmm: CategoricalHMM,
    train: Sequence[LaneBatch],
    valid: Sequence[LaneBatch] | None = None,
    max_iter: int = 20,
    tol: float = 1e-4,
    smoothing: float = 1e-3,
    patience: int = 2,
    reduce: Reducer | None = None,
    progress: bool = True,
) -> EMResult:
    """Baum-Welch from ``hmm``. With ``valid``, keep the parameters with the best validation
    likelihood and stop after ``patience`` iterations without improvement."""
    monitor = ConvergenceMonitor(tol=tol, max_iter=max_iter)
    best, best_valid, best_iter, since_best = hmm, -float("inf"), 0, 0
    bar = tqdm(total=max_iter, desc=f"EM K={hmm.n_states}", unit="iter", disable=not progress)
    for it in range(max_iter):
        t0 = time.perf_counter()
        stats = e_step(hmm, train, reduce)
        record = IterationRecord(
            it, stats.log_likelihood, log_prior(hmm, smoothing), stats.n_tokens, 0.0
        )
        if valid is not None:
            record.valid_log_likelihood, record.valid_tokens = log_likelihood(hmm, valid)
            if record.valid_log_likelihood > best_valid:
                best, best_valid, best_iter, since_best = hmm, record.valid_log_likelihood, it, 0
            else:
                since_best += 1
        new = m_step(stats, smoothing, dtype=hmm.start.dtype)
        record.seconds = time.perf_counter() - t0
        monitor.report(record)
        bar.update(1)
        bar.set_postfix(
            nats_tok=f"{record.train_nats_per_token:.4f}",
            tok_s=f"{stats.n_tokens / record.seconds:,.0f}",
        )
        if valid is not None and since_best >= patience:
            log.info("early stop at iteration %d (best %d)", it, best_iter)
            break
        if monitor.converged:
            hmm = new
            break
        hmm = new
    bar.close()
    if valid is None:
        best, best_iter = hmm, len(monitor.history)
    elif since_best < patience and log_likelihood(hmm, valid)[0] > best_valid:
        best, best_iter = hmm, len(monitor.history)  # the final M-step's parameters win
    return EMResult(copy.copy(best), monitor, best_iter)
