"""Fit HMMs to pretokenized streams: initialisation, restarts, EM, scoring in bits per byte.

This is what ``hmm-lang fit-hmm``, the run pipeline and the notebooks call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.batching import check_sequences, pack_lanes
from hmm_lang.hmm.cloned import ClonedHMM, allocate_clones, init_cloned_hmm
from hmm_lang.hmm.distributed import all_reduce_stats, rank_and_world, shard
from hmm_lang.hmm.em import fit_em
from hmm_lang.hmm.inference import log_likelihood
from hmm_lang.hmm.init import INITS, initial_hmm
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.hmm.monitor import ConvergenceMonitor, IterationRecord
from hmm_lang.hmm.online import fit_online, minibatches
from hmm_lang.pretokenize import TokenStream
from hmm_lang.scoring import Score, check_vocab, score

log = logging.getLogger(__name__)


@dataclass
class HMMFitConfig:
    """Settings of one HMM fit; stored as the run's ``config.yaml``."""

    states: int = 64  # dense: K; cloned: total states (clones x vocab unless --clones)
    cloned: bool = False
    clones: int = 16  # cloned: clones per token (the maximum, with allocation=frequency)
    allocation: str = "uniform"  # cloned: uniform | frequency
    escape: float = 0.01  # cloned: escape mass during EM (retuned on held-out data after)
    init: str = "class-bigram"
    iters: int = 20
    tol: float = 1e-4  # nats per token
    smoothing: float = 1e-3  # Dirichlet pseudocount
    restarts: int = 1
    patience: int = 2
    online: bool = False
    minibatch_stories: int = 512
    online_alpha: float = 0.7
    seed: int = 0
    batch_tokens: int | None = None  # tokens per E-step batch; None: about 1 GB of beliefs
    lane_len: int = 512
    device: str = "cpu"
    max_train_stories: int | None = None

    def validate(self) -> HMMFitConfig:
        if self.states < 1:
            raise HmmLangError(f"--states must be at least 1, got {self.states}")
        if self.init not in INITS:
            raise HmmLangError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        if self.allocation not in ("uniform", "frequency"):
            raise HmmLangError(
                f"unknown clone allocation {self.allocation!r}: uniform or frequency"
            )
        if self.clones < 1 or self.iters < 0 or self.restarts < 1:
            raise HmmLangError("--clones and --restarts must be at least 1, --iters at least 0")
        return self


@dataclass
class FitResult:
    model: CategoricalHMM | ClonedHMM
    history: list[dict]
    valid_score: Score
    seconds: float
    n_train_tokens: int

    def metrics(self) -> dict:
        return {
            **self.valid_score.as_dict(),
            "seconds": self.seconds,
            "n_train_tokens": self.n_train_tokens,
            "n_parameters": self.model.n_parameters,
            "n_states": self.model.n_states,
            "history": self.history,
        }


LANES = 1536  # lanes per step: measured best on 2 cores at K=64..256 (1e5-token batches of 100-token stories)


def batch_tokens_for(cfg: HMMFitConfig, states: int, longest: int = 0) -> int:
    """Tokens per E-step batch: about :data:`LANES` lanes of ``max(lane_len, longest)`` steps,
    at most ~1 GB of (T, N, K) float32 beliefs. ``cfg.batch_tokens`` overrides."""
    if cfg.batch_tokens is not None:
        return cfg.batch_tokens
    lane = max(cfg.lane_len, longest)
    return int(max(lane, min(LANES * lane, (1 << 28) // states)))


def _training_sequences(
    train: TokenStream, valid: TokenStream, cfg: HMMFitConfig
) -> list[np.ndarray]:
    """Checked int64 training sequences (the first ``max_train_stories``)."""
    cfg.validate()
    check_vocab(train.vocab_size, valid.vocab_size, "training stream")
    seqs = [s.astype(np.int64) for s in train.stories()]
    seqs = seqs[: cfg.max_train_stories] if cfg.max_train_stories else seqs
    check_sequences(seqs, train.vocab_size)
    return seqs


def fit_dense(train: TokenStream, valid: TokenStream, cfg: HMMFitConfig) -> FitResult:
    """Dense HMM: data-driven (or random) start, restarts, batch or online EM."""
    t0 = time.perf_counter()
    seqs = _training_sequences(train, valid, cfg)
    rank, world = rank_and_world()
    local = shard(seqs, rank, world)
    bt = batch_tokens_for(cfg, cfg.states, max(len(s) for s in seqs))
    train_b = pack_lanes(local, bt, cfg.lane_len)
    valid_b = pack_lanes(valid.stories(), bt, cfg.lane_len)
    best = None
    for r in range(cfg.restarts):
        hmm = initial_hmm(cfg.init, seqs, cfg.states, train.vocab_size, seed=cfg.seed + r)
        hmm = hmm.to(device=cfg.device)
        if cfg.online:
            batches = minibatches(local, cfg.minibatch_stories, cfg.seed + r, max(cfg.iters, 1))
            hmm, monitor = fit_online(
                hmm,
                batches,
                corpus_tokens=sum(len(s) for s in seqs),
                alpha=cfg.online_alpha,
                smoothing=cfg.smoothing,
                reduce=all_reduce_stats,
                batch_tokens=bt,
            )
        else:
            res = fit_em(
                hmm,
                train_b,
                valid_b,
                max_iter=cfg.iters,
                tol=cfg.tol,
                smoothing=cfg.smoothing,
                patience=cfg.patience,
                reduce=all_reduce_stats,
            )
            hmm, monitor = res.hmm, res.monitor
        ll, n_tok = log_likelihood(hmm, valid_b)
        log.info("restart %d: valid %.4f nats/token", r, -ll / n_tok)
        if best is None or ll > best[0]:
            best = (ll, hmm, monitor)
    ll, hmm, monitor = best
    return FitResult(
        hmm.to(device="cpu"),
        monitor.as_dicts(),
        score(ll, valid.n_tokens, valid.n_bytes),
        time.perf_counter() - t0,
        sum(len(s) for s in seqs),
    )


ESCAPE_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2)


def fit_cloned(train: TokenStream, valid: TokenStream, cfg: HMMFitConfig) -> FitResult:
    """Cloned HMM: EM on 95% of the training stories, escape mass tuned on the other 5%."""
    t0 = time.perf_counter()
    seqs = _training_sequences(train, valid, cfg)
    n_dev = max(1, len(seqs) // 20) if len(seqs) > 1 else 0
    fit_seqs, dev_seqs = seqs[: len(seqs) - n_dev], seqs[len(seqs) - n_dev :]
    v = train.vocab_size
    if cfg.allocation == "frequency":
        counts = np.bincount(np.concatenate(fit_seqs), minlength=v)
        clones = allocate_clones(counts, max(cfg.states, v), cfg.clones)
    else:
        clones = cfg.clones
    model = init_cloned_hmm(fit_seqs, v, clones, escape=cfg.escape, seed=cfg.seed)
    # cloned steps hold (N, n, n) blocks: size the batch as for n^2 dense states
    bt = batch_tokens_for(cfg, model.max_clones**2, max(len(s) for s in seqs))
    batches = pack_lanes(fit_seqs, bt, cfg.lane_len)
    # No early stop on a small improvement: cloned EM crawls along the symmetric plateau for
    # a few iterations before it accelerates. The monitor still checks monotonicity.
    monitor = ConvergenceMonitor(tol=-float("inf"), max_iter=max(cfg.iters, 1))
    bar = tqdm(range(cfg.iters), desc=f"cloned EM S={model.n_states}", unit="iter")
    for it in bar:
        t_it = time.perf_counter()
        stats = model.expected_counts(batches[0])
        for b in batches[1:]:
            stats.add_(model.expected_counts(b))
        prior = model.log_prior(cfg.smoothing)
        model = model.m_step(stats, cfg.smoothing)
        seconds = time.perf_counter() - t_it
        monitor.report(IterationRecord(it, stats.log_likelihood, prior, stats.n_tokens, seconds))
        bar.set_postfix(
            nats_tok=f"{-stats.log_likelihood / stats.n_tokens:.4f}",
            tok_s=f"{stats.n_tokens / seconds:,.0f}",
        )
    if dev_seqs:
        model.escape = tune_escape(model, pack_lanes(dev_seqs, bt, cfg.lane_len))
    ll, _ = model.log_likelihood(pack_lanes(valid.stories(), bt, cfg.lane_len))
    return FitResult(
        model,
        monitor.as_dicts(),
        score(ll, valid.n_tokens, valid.n_bytes),
        time.perf_counter() - t0,
        sum(len(s) for s in fit_seqs),
    )


def tune_escape(model: ClonedHMM, dev_batches, grid=ESCAPE_GRID) -> float:
    """The escape mass in ``grid`` with the best likelihood on held-out batches."""
    results = []
    for eps in grid:
        model.escape = eps
        results.append((model.log_likelihood(dev_batches)[0], eps))
    best = max(results)[1]
    log.info("escape mass tuned on held-out stories: %g", best)
    return best


def fit_hmm(train: TokenStream, valid: TokenStream, cfg: HMMFitConfig) -> FitResult:
    return (fit_cloned if cfg.cloned else fit_dense)(train, valid, cfg)
