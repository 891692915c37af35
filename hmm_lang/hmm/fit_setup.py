"""What every HMM fit shares: its settings (:class:`HMMFitConfig`), its result
(:class:`FitResult`), the dev carve of the training stories, the lane layout of E-step batches,
the memory check, and the one validation pass at the end. :mod:`hmm_lang.hmm.fit` (dense),
:mod:`~hmm_lang.hmm.fit_cloned` and :mod:`~hmm_lang.hmm.fit_blocked` build on it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from hmm_lang.config import check_device
from hmm_lang.devsplit import DEV_FRACTION, dev_mask
from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.batching import check_sequences, pack_lanes
from hmm_lang.hmm.blocked import BlockedHMM
from hmm_lang.hmm.cloned import ClonedHMM
from hmm_lang.hmm.cloned_init import ESCAPE_MODELS
from hmm_lang.hmm.distributed import rank_and_world
from hmm_lang.hmm.inference import log_likelihood
from hmm_lang.hmm.init import INITS
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.pretokenize import TokenStream
from hmm_lang.scoring import Score, check_vocab, score

SMOOTHING_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1)  # final-M-step pseudocounts tried on dev
ESCAPE_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.5, 0.7)
ALLOCATIONS = ("uniform", "frequency", "auto")


@dataclass
class HMMFitConfig:
    """Settings of one HMM fit; stored as the run's ``config.yaml``."""

    states: int = 64  # dense and blocked: K (cloned HMMs have V x clones states)
    cloned: bool = False
    blocked: bool = False  # blocked emissions (Chiu & Rush 2020): K / clusters states per cluster
    clusters: int = 128  # blocked: token clusters M
    clustering: str = "exchange"  # blocked: exchange | context | auto (the better on dev)
    train: str = "em"  # blocked: em | grad (AdamW through a compact parameterisation)
    lr: float = 0.01  # blocked grad: AdamW learning rate
    state_dropout: float = 0.5  # blocked grad: share of each cluster's states dropped per step
    embed_dim: int = 128  # blocked grad: state and token embedding width
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
    check_memory: bool = True  # dense: refuse K whose tables and beliefs exceed the free RAM

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
        if self.blocked:
            self._validate_blocked()
        if not 0.0 < self.dev_fraction < 1.0:
            raise HmmLangError(f"--dev-fraction must be in (0, 1), got {self.dev_fraction}")
        if self.max_train_stories is not None and self.max_train_stories < 2:
            raise HmmLangError("--max-train-stories must be at least 2 (one goes to dev)")
        if self.minibatch_stories < 1:
            raise HmmLangError(
                f"--minibatch-stories must be at least 1, got {self.minibatch_stories}"
            )
        check_device(self.device, "--device")
        return self

    def _validate_blocked(self) -> None:
        from hmm_lang.hmm.clusters import CLUSTERINGS

        if self.cloned:
            raise HmmLangError("choose one of --cloned and --blocked")
        if self.clusters < 1 or self.states % self.clusters or self.states < self.clusters:
            raise HmmLangError(
                f"--states ({self.states}) must be a multiple of --clusters ({self.clusters})"
            )
        if self.clustering not in (*CLUSTERINGS, "auto"):
            raise HmmLangError(
                f"unknown clustering {self.clustering!r}; choose {', '.join(CLUSTERINGS)} or auto"
            )
        if self.train not in ("em", "grad"):
            raise HmmLangError(f"unknown --train {self.train!r}; choose em or grad")
        if not (self.lr > 0 and 0 <= self.state_dropout < 1 and self.embed_dim >= 1):
            raise HmmLangError("--lr must be > 0, --state-dropout in [0, 1), --embed-dim >= 1")
        if self.smoothing <= 0:
            raise HmmLangError("a blocked HMM needs --smoothing > 0 (a state with no counts)")


def fit_settings(path: str | Path) -> dict:
    """:class:`HMMFitConfig` fields from a YAML file (``configs/hmm_best.yaml``); one-line
    errors for a missing file, bad YAML or unknown keys."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise HmmLangError(f"no HMM config file at {path}; give a YAML file of fit-hmm settings")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise HmmLangError(f"{path} is not valid YAML ({type(e).__name__}); fix the file") from None
    names = {f.name for f in fields(HMMFitConfig)}
    if not isinstance(d, dict):
        raise HmmLangError(f"{path} must hold a mapping of fit-hmm settings")
    unknown = sorted(set(d) - names)
    if unknown:
        raise HmmLangError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    return d


@dataclass
class FitResult:
    """A fitted HMM, its curves, its dev (and validation) scores and what was chosen on dev;
    ``metrics`` is the run's metrics.json."""

    model: CategoricalHMM | ClonedHMM | BlockedHMM
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

    @property
    def metrics(self) -> dict:
        """The fit's numbers as a JSON-able dict (an attribute, like ``Run.metrics``): the
        validation score (or dev, without validation), dev score, sizes, stop reason, choices
        made on dev and the EM ``history``."""
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


def lane_len_for(cfg: HMMFitConfig, sequences: list[np.ndarray], ragged: bool = False) -> int:
    """Lane length: ``cfg.lane_len``, shortened on small data so that a batch still holds
    about :data:`LANES` lanes. Never below the longest sequence, unless ``ragged`` (the dense
    passes, which compute only the lanes still running) and the data cannot fill LANES lanes
    that long: then sequences longer than the lane have lanes of their own."""
    n_tok = sum(len(s) for s in sequences)
    longest = max(len(s) for s in sequences)
    fill = -(-n_tok // LANES)
    if ragged and fill < longest:
        return int(min(cfg.lane_len, fill))
    return int(max(longest, min(cfg.lane_len, fill)))


def check_fit_memory(cfg: HMMFitConfig, vocab_size: int) -> None:
    """One-line error, before any allocation, when a dense fit cannot fit in the free RAM."""
    if cfg.cloned or cfg.blocked or not cfg.check_memory:
        return
    from hmm_lang.memory import check_memory, dense_fit_bytes

    need = dense_fit_bytes(cfg.states, vocab_size, batch_tokens_for(cfg, cfg.states, cfg.lane_len))
    check_memory(
        need, f"a dense HMM with {cfg.states} states (V={vocab_size})", "use fewer --states"
    )


def split_fit_dev(train: TokenStream, valid: TokenStream | None, cfg: HMMFitConfig):
    """Checked int64 training sequences (the first ``max_train_stories``), split into
    (fit, dev) by story."""
    cfg.validate()
    if valid is not None:
        check_vocab(train.vocab_size, valid.vocab_size, "training stream")
    # views into the (memory-mapped) stream; batches convert them to int64 when built
    seqs = train.head(cfg.max_train_stories).stories() if cfg.max_train_stories else train.stories()
    check_sequences(seqs, train.vocab_size)
    mask = dev_mask(len(seqs), cfg.dev_fraction, cfg.dev_seed)
    fit = [s for s, m in zip(seqs, mask, strict=True) if not m]
    dev = [s for s, m in zip(seqs, mask, strict=True) if m]
    # bytes of the dev stories, plus one per story for its </s> (as TokenStream.n_bytes)
    dev_bytes = int(train.story_bytes[: len(seqs)][mask].sum()) + len(dev)
    return fit, dev, dev_bytes


def score_valid(model, valid: TokenStream | None, bt: int, lane: int, ragged: bool = False):
    """Validation score and per-story nats, read once at the end (None without validation)."""
    if valid is None:
        return None, None
    per_story = np.zeros(valid.n_stories)
    batches = pack_lanes(valid.stories(), bt, lane, ragged=ragged)
    if isinstance(model, CategoricalHMM):
        ll, _ = log_likelihood(model, batches, per_story=per_story)
    else:
        ll, _ = model.log_likelihood(batches, per_story=per_story)
    return score(ll, valid.n_tokens, valid.n_bytes), -per_story


def em_checkpoint_path(prefix: str | Path | None, part: str) -> Path | None:
    """Where one EM run of a fit keeps its mid-fit state: ``<prefix>.<part>.pt`` (None: no
    prefix, or a multi-process fit, whose processes would all write it)."""
    if prefix is None or rank_and_world()[1] > 1:
        return None
    return Path(f"{prefix}.{part}.pt")
