"""Stepwise (online) EM, Liang & Klein 2009: for corpora far larger than memory.

After each minibatch m (the k-th update), the running statistics move towards the minibatch's
expected counts, rescaled to the corpus size: mu <- (1 - eta_k) mu + eta_k * s_m * (N / n_m),
with eta_k = (k + 2) ** -alpha, alpha in (0.5, 1]; then an M-step. Minibatches are built on the
fly from an iterator of sequences, so only one minibatch sits in memory at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.batching import LaneBatch, pack_lanes
from hmm_lang.hmm.em import Reducer, e_step, log_prior, m_step
from hmm_lang.hmm.inference import HMMStats, log_likelihood
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.hmm.monitor import ConvergenceMonitor, IterationRecord

log = logging.getLogger(__name__)


def minibatches(
    sequences: Sequence[np.ndarray], batch_sequences: int, seed: int, epochs: int
) -> Iterator[list[np.ndarray]]:
    """Shuffled minibatches of ``batch_sequences`` sequences, ``epochs`` passes."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(sequences))
        for i in range(0, len(order), batch_sequences):
            yield [sequences[j] for j in order[i : i + batch_sequences]]


def fit_online(
    hmm: CategoricalHMM,
    batches_of_sequences: Iterable[list[np.ndarray]],
    corpus_tokens: int,
    alpha: float = 0.7,
    smoothing: float = 1e-3,
    valid: Sequence[LaneBatch] | None = None,
    eval_every: int = 0,
    reduce: Reducer | None = None,
    batch_tokens: int = 1 << 18,
    callback: Callable[[int, CategoricalHMM], None] | None = None,
) -> tuple[CategoricalHMM, ConvergenceMonitor]:
    """Stepwise EM over minibatches; the monitor records one entry per update (the
    minibatch's log-likelihood before its update, and the validation log-likelihood every
    ``eval_every`` updates)."""
    if not 0.5 < alpha <= 1.0:
        raise HmmLangError(f"stepwise EM needs alpha in (0.5, 1], got {alpha}")
    monitor = ConvergenceMonitor(tol=0.0, max_iter=10**12)
    running: HMMStats | None = None
    bar = tqdm(desc=f"online EM K={hmm.n_states}", unit="tok", unit_scale=True)
    for k, seqs in enumerate(batches_of_sequences):
        t0 = time.perf_counter()
        stats = e_step(hmm, pack_lanes(seqs, batch_tokens=batch_tokens), reduce)
        scaled = stats.scaled(corpus_tokens / stats.n_tokens)
        eta = (k + 2) ** -alpha
        if running is None:
            running = scaled
        else:
            running = running.scaled(1 - eta)
            running.add_(scaled.scaled(eta))
        record = IterationRecord(
            k, stats.log_likelihood, log_prior(hmm, smoothing), stats.n_tokens, 0
        )
        hmm = m_step(running, smoothing, dtype=hmm.start.dtype)
        if valid is not None and eval_every and (k + 1) % eval_every == 0:
            record.dev_log_likelihood, record.dev_tokens = log_likelihood(hmm, valid)
        record.seconds = time.perf_counter() - t0
        monitor.history.append(record)  # minibatches differ: no monotonicity to check
        bar.update(stats.n_tokens)
        bar.set_postfix(nats_tok=f"{record.train_nats_per_token:.4f}")
        if callback is not None:
            callback(k, hmm)
    bar.close()
    return hmm, monitor
