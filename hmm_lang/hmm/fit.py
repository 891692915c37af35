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
from dataclasses import dataclass

import numpy as np

from hmm_lang.devsplit import DEV_FRACTION, dev_mask
from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.batching import check_sequences, pack_lanes
from hmm_lang.hmm.cloned import ESCAPE_MODELS, ClonedHMM, allocate_clones, init_cloned_hmm
from hmm_lang.hmm.distributed import all_reduce_stats, rank_and_world, shard
from hmm_lang.hmm.em import EMResult, fit_em, m_step, run_em
from hmm_lang.hmm.inference import log_likelihood
from hmm_lang.hmm.init import INITS, initial_hmm
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.hmm.monitor import STOP_MAX_ITERS
from hmm_lang.hmm.online import fit_online, minibatches
from hmm_lang.pretokenize import TokenStream
from hmm_lang.scoring import Score, check_vocab, score

log = logging.getLogger(__name__)

SMOOTHING_GRID = (1e-4, 1e-3, 1e-2, 0.1)  # final-M-step pseudocounts tried on dev
ESCAPE_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.5, 0.7)
ALLOCATIONS = ("uniform", "frequency", "auto")


@dataclass
class HMMFitConfig:
    """Settings of one HMM fit; stored as the run's ``config.yaml``."""

    states: int = 64  # dense: K (cloned HMMs have V x clones states, whatever the allocation)
    cloned: bool = False
    clones: int = 16  # cloned: clones per token (frequency allocation: at most 2x this)
    allocation: str = "uniform"  # cloned: uniform | frequency | auto (the better on dev)
    escape: float = 0.01  # cloned: escape mass during EM (tuned on dev after)
    escape_model: str = "kn-bigram"  # cloned: where escaped mass goes: kn-bigram | unigram
    init: str = "split"
    run: str | None = None  # a transformer run, for init lvd
    max_iters: int = 300
    tol: float = 1e-4  # nats per token of dev gain that counts as progress
    patience: int = 3  # iterations in a row below tol before stopping
    smoothing: float = 1e-3  # Dirichlet pseudocount during EM (retuned on dev after)
    tune_smoothing: bool = True
    restarts: int = 1
    dev_fraction: float = DEV_FRACTION
    dev_seed: int = 0
    online: bool = False
    minibatch_stories: int = 512
    online_alpha: float = 0.7
    seed: int = 0
    batch_tokens: int | None = None  # tokens per E-step batch; None: sized by lanes
    lane_len: int = 512
    device: str = "cpu"
    max_train_stories: int | None = None

    def validate(self) -> HMMFitConfig:
        if self.states < 1:
            raise HmmLangError(f"--states must be at least 1, got {self.states}")
        if self.init not in INITS:
            raise HmmLangError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        if self.init == "lvd" and not self.run and not self.cloned:
            raise HmmLangError("--init lvd needs --run RUN_DIR, a trained transformer run")
        if self.allocation not in ALLOCATIONS:
            raise HmmLangError(
                f"unknown clone allocation {self.allocation!r}: {', '.join(ALLOCATIONS)}"
            )
        if self.escape_model not in ESCAPE_MODELS:
            raise HmmLangError(
                f"unknown escape model {self.escape_model!r}: {', '.join(ESCAPE_MODELS)}"
            )
        if self.clones < 1 or self.max_iters < 1 or self.restarts < 1 or self.patience < 1:
            raise HmmLangError(
                "--clones, --restarts, --patience and --max-iters must be at least 1"
            )
        if not self.smoothing >= 0 or not self.tol >= 0:
            raise HmmLangError("--smoothing and --tol must be non-negative numbers")
        if not 0.0 <= self.escape < 1.0:
            raise HmmLangError(f"--escape must be in [0, 1), got {self.escape}")
        if self.cloned and self.smoothing <= 0:
            raise HmmLangError("a cloned HMM needs --smoothing > 0 (a clone row with no counts)")
        if not 0.0 < self.dev_fraction < 1.0:
            raise HmmLangError(f"--dev-fraction must be in (0, 1), got {self.dev_fraction}")
        if self.max_train_stories is not None and self.max_train_stories < 2:
            raise HmmLangError("--max-train-stories must be at least 2 (one goes to dev)")
        return self


@dataclass
class FitResult:
    model: CategoricalHMM | ClonedHMM
    history: list[dict]  # the kept run's curve: train and dev nats per iteration
    dev_score: Score
    valid_score: Score | None  # None when no validation stream was given
    seconds: float
    n_train_tokens: int  # tokens EM trained on (the dev split excluded)
    stop_reason: str
    iterations: int
    best_iteration: int
    choices: dict  # what was chosen on dev (smoothing, escape, allocation, restart)
    valid_story_nats: np.ndarray | None = None  # (S,) nats of each validation story

    def metrics(self) -> dict:
        main = self.valid_score or self.dev_score
        return {
            **main.as_dict(),
            "scored_on": "valid" if self.valid_score else "dev",
            "dev_bits_per_byte": self.dev_score.bits_per_byte,
            "dev_bits_per_token": self.dev_score.bits_per_token,
            "seconds": self.seconds,
            "n_train_tokens": self.n_train_tokens,
            "n_parameters": self.model.n_parameters,
            "n_states": self.model.n_states,
            "iterations": self.iterations,
            "best_iteration": self.best_iteration,
            "stop_reason": self.stop_reason,
            "choices": self.choices,
            "history": self.history,
        }


LANES = 1536  # lanes per step: measured best on 2 cores at K=64..256


def batch_tokens_for(cfg: HMMFitConfig, states: int, longest: int = 0) -> int:
    """Tokens per E-step batch: about :data:`LANES` lanes of ``max(lane_len, longest)`` steps,
    at most ~1 GB of (T, N, K) float32 beliefs. ``cfg.batch_tokens`` overrides."""
    if cfg.batch_tokens is not None:
        return cfg.batch_tokens
    lane = max(cfg.lane_len, longest)
    return int(max(lane, min(LANES * lane, (1 << 28) // states)))


def lane_len_for(cfg: HMMFitConfig, sequences: list[np.ndarray]) -> int:
    """Lane length: ``cfg.lane_len``, shortened on small data so that a batch still holds
    about :data:`LANES` lanes (never below the longest sequence, which must fit a lane)."""
    n_tok = sum(len(s) for s in sequences)
    longest = max(len(s) for s in sequences)
    return int(max(longest, min(cfg.lane_len, -(-n_tok // LANES))))


def _sequences(train: TokenStream, valid: TokenStream | None, cfg: HMMFitConfig):
    """Checked int64 training sequences (the first ``max_train_stories``), split into
    (fit, dev) by story."""
    cfg.validate()
    if valid is not None:
        check_vocab(train.vocab_size, valid.vocab_size, "training stream")
    seqs = [s.astype(np.int64) for s in train.stories()]
    seqs = seqs[: cfg.max_train_stories] if cfg.max_train_stories else seqs
    check_sequences(seqs, train.vocab_size)
    mask = dev_mask(len(seqs), cfg.dev_fraction, cfg.dev_seed)
    fit = [s for s, m in zip(seqs, mask, strict=True) if not m]
    dev = [s for s, m in zip(seqs, mask, strict=True) if m]
    # bytes of the dev stories, plus one per story for its </s> (as TokenStream.n_bytes)
    dev_bytes = int(train.story_bytes[: len(seqs)][mask].sum()) + len(dev)
    return fit, dev, dev_bytes


def _score_valid(model, valid: TokenStream | None, bt: int, lane: int):
    """Validation score and per-story nats, read once at the end (None without validation)."""
    if valid is None:
        return None, None
    per_story = np.zeros(valid.n_stories)
    batches = pack_lanes(valid.stories(), bt, lane)
    if isinstance(model, ClonedHMM):
        ll, _ = model.log_likelihood(batches, per_story=per_story)
    else:
        ll, _ = log_likelihood(model, batches, per_story=per_story)
    return score(ll, valid.n_tokens, valid.n_bytes), -per_story


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
    train: TokenStream, valid: TokenStream | None, cfg: HMMFitConfig, progress: bool = True
) -> FitResult:
    """Dense HMM: start, restarts, batch (or online) EM, all choices on the dev split."""
    t0 = time.perf_counter()
    fit_seqs, dev_seqs, dev_bytes = _sequences(train, valid, cfg)
    rank, world = rank_and_world()
    local = shard(fit_seqs, rank, world)
    lane = lane_len_for(cfg, fit_seqs)
    bt = batch_tokens_for(cfg, cfg.states, lane)
    train_b = pack_lanes(local, bt, lane)
    dev_b = pack_lanes(dev_seqs, bt, lane)
    best = None
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
            )
            hmm, smoothing, ll = _tune_smoothing(res, dev_b, cfg)
            monitor, reason, best_it = res.monitor, res.stop_reason, res.best_iteration
        log.info("restart %d: dev %.4f nats/token", r, -ll / sum(len(s) for s in dev_seqs))
        if best is None or ll > best[0]:
            best = (ll, hmm, monitor, reason, best_it, {"smoothing": smoothing, "restart": r})
    ll, hmm, monitor, reason, best_it, choices = best
    hmm = hmm.to(device="cpu")
    valid_score, story_nats = _score_valid(hmm, valid, bt, lane)
    return FitResult(
        hmm,
        monitor.as_dicts(),
        score(ll, sum(map(len, dev_seqs)), dev_bytes),
        valid_score,
        time.perf_counter() - t0,
        sum(len(s) for s in fit_seqs),
        reason,
        len(monitor.history),
        best_it,
        choices | {"init": cfg.init},
        story_nats,
    )


def _cloned_em(fit_seqs, dev_seqs, v, clones, cfg: HMMFitConfig, eos_id, progress):
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
    lane = lane_len_for(cfg, fit_seqs)
    # cloned steps hold (N, n, n) blocks: size the batch as for n^2 dense states
    bt = batch_tokens_for(cfg, model.max_clones**2, lane)
    batches = pack_lanes(fit_seqs, bt, lane)
    dev_b = pack_lanes(dev_seqs, bt, lane)

    def e_step(m: ClonedHMM):
        stats = m.expected_counts(batches[0])
        for b in batches[1:]:
            stats.add_(m.expected_counts(b))
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
        desc=f"cloned EM S={model.n_states}",
        progress=progress,
    )
    best = res.hmm
    smoothings = [cfg.smoothing]
    if res.stats is not None and cfg.tune_smoothing:
        smoothings = sorted(set(SMOOTHING_GRID) | {cfg.smoothing})
    tried = []
    for c in smoothings:
        cand = best if res.stats is None else model.m_step(res.stats, c)
        for eps in sorted(set(ESCAPE_GRID) | {cfg.escape}):
            cand.escape = eps
            tried.append((cand.log_likelihood(dev_b)[0], c, eps, cand))
    ll, c, eps, chosen = max(tried, key=lambda t: t[0])
    chosen.escape = eps
    log.info("cloned HMM: pseudocount %g, escape %g chosen on dev", c, eps)
    if res.stats is None:
        c = None  # the start itself was kept: no pseudocount was used
    return ll, chosen, res, {"smoothing": c, "escape": eps}, bt, lane


def fit_cloned(
    train: TokenStream, valid: TokenStream | None, cfg: HMMFitConfig, progress: bool = True
) -> FitResult:
    """Cloned HMM: EM to dev convergence; pseudocount, escape mass and (with allocation auto)
    uniform or frequency allocation chosen on dev."""
    t0 = time.perf_counter()
    fit_seqs, dev_seqs, dev_bytes = _sequences(train, valid, cfg)
    v = train.vocab_size
    allocations = ("uniform", "frequency") if cfg.allocation == "auto" else (cfg.allocation,)
    best = None
    for alloc in allocations:
        if alloc == "frequency":
            # as many states as the uniform allocation, up to 2x the clones for frequent tokens
            counts = np.bincount(np.concatenate(fit_seqs), minlength=v)
            clones = allocate_clones(counts, v * cfg.clones, 2 * cfg.clones)
        else:
            clones = cfg.clones
        out = _cloned_em(fit_seqs, dev_seqs, v, clones, cfg, train.eos_id, progress)
        log.info("allocation %s: dev %.4f nats/token", alloc, -out[0] / sum(map(len, dev_seqs)))
        if best is None or out[0] > best[1][0]:
            best = (alloc, out)
    alloc, (ll, model, res, choices, bt, lane) = best
    valid_score, story_nats = _score_valid(model, valid, bt, lane)
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
        choices | {"allocation": alloc, "escape_model": cfg.escape_model},
        story_nats,
    )


def fit_hmm(
    train: TokenStream,
    valid: TokenStream | None = None,
    cfg: HMMFitConfig | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit a dense or cloned HMM (``cfg.cloned``) to ``train``; score ``valid`` once at the end."""
    cfg = cfg or HMMFitConfig()
    return (fit_cloned if cfg.cloned else fit_dense)(train, valid, cfg, progress)
