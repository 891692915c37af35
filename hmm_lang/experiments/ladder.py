"""The ladder: bits per byte of every model family on one validation text, per tokenizer.

Unigram, Kneser-Ney 2..5-grams, dense HMMs, cloned HMMs and trained transformers, each scored
story by story on the same validation stories, with the same bytes and the same context rule
(each story from its start; ``</s>`` predicted). Every HMM choice is made on a dev split carved
from the training stories (see :mod:`hmm_lang.hmm.fit`); validation is read once per model, at
the end. Each number comes with a story-bootstrap 95% interval and a paired difference to the
Kneser-Ney 5-gram on the same resamples; HMMs up to ``multi_seed_max_states`` states are fitted
with several seeds (mean over seeds reported, with the seeds' spread).

N-grams and transformers train on the whole training split; HMMs train on it less their dev
stories (5% by default), the price of choosing on data that is not validation.

Parameters are counted by one rule for every family: the numbers a model stores to compute its
probabilities (weights, probabilities, n-gram counts and context statistics), less one for each
distribution whose entries must sum to one.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from hmm_lang.config import check_device
from hmm_lang.corpus import Corpus
from hmm_lang.errors import HmmLangError
from hmm_lang.experiments.fit_cache import FitCache, FitRecord
from hmm_lang.experiments.ladder_table import Entry, markdown_table, story_bytes, summarise
from hmm_lang.experiments.paired import save_story_nats
from hmm_lang.hmm.fit import HMMFitConfig
from hmm_lang.ngram import KneserNeyModel, UnigramModel
from hmm_lang.pretokenize import TokenStream, pretokenize
from hmm_lang.runs import check_run_split
from hmm_lang.tokenizer import BOS, hf_dir, load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class LadderConfig:
    vocab_sizes: tuple[int, ...] = (1024, 2048, 4096)
    ngram_orders: tuple[int, ...] = (1, 2, 3, 4, 5)
    hmm_states: tuple[int, ...] = (16, 64, 256, 1024)
    seeds: tuple[int, ...] = (0, 1, 2)
    multi_seed_max_states: int = 256  # dense HMMs above this get the first seed only
    hmm_init: str = "split"
    max_iters: int = 300
    tol: float = 1e-4
    patience: int = 3
    cloned_clones: tuple[int, ...] = (1, 4, 16)
    cloned_allocation: str = "auto"  # uniform and frequency, the better on dev
    # EM pseudocounts of cloned HMMs, each fitted, the best on dev kept: with 32+ clones per
    # token, 1e-3 on every block entry outweighs the counts of rare tokens' clones and EM's
    # first step already lowers the likelihood (65,536 states at V=2048 kept its start)
    cloned_smoothings: tuple[float, ...] = (1e-5, 1e-3)
    blocked_states: tuple[int, ...] = ()  # blocked HMMs: K = blocked_clusters x block size
    blocked_clusters: int = 512
    blocked_block_size: int | None = None  # if set, clusters = K / block size for every K
    blocked_config: str | None = None  # YAML of HMMFitConfig settings for blocked fits
    max_train_stories: int | None = None  # HMM training stories (None: all)
    hmm_device: str = "cpu"  # where dense EM runs (cloned and blocked fits run on the CPU)
    transformer_runs: list[str] = field(default_factory=list)
    n_boot: int = 1000
    dev_fraction: float = 0.05


def validate_ladder(cfg: LadderConfig) -> None:
    """One-line errors for bad ladder settings, before any folder or fit."""
    from hmm_lang.tokenizer import check_vocab_size

    for v in cfg.vocab_sizes:
        check_vocab_size(v)
    if any(o < 1 for o in cfg.ngram_orders):
        raise HmmLangError("--orders must be at least 1 (1 is the unigram)")
    if any(k < 1 for k in cfg.hmm_states) or any(c < 1 for c in cfg.cloned_clones):
        raise HmmLangError("--states and --clones must be at least 1")
    if not cfg.seeds:
        raise HmmLangError("--seeds needs at least one seed")
    if not cfg.cloned_smoothings or any(not c > 0 for c in cfg.cloned_smoothings):
        raise HmmLangError("--cloned-smoothing needs one or more positive pseudocounts")
    if cfg.n_boot < 10:
        raise HmmLangError(f"--n-boot must be at least 10, got {cfg.n_boot}")
    check_device(cfg.hmm_device, "--device")
    if cfg.max_train_stories is not None and cfg.max_train_stories < 2:
        raise HmmLangError("--max-train-stories must be at least 2 (one goes to dev)")
    if cfg.max_iters < 1 or cfg.patience < 1 or not cfg.tol >= 0:
        raise HmmLangError("--max-iters and --patience must be >= 1, --tol >= 0")
    if cfg.blocked_block_size is not None and cfg.blocked_block_size < 1:
        raise HmmLangError(f"--blocked-block-size must be at least 1, got {cfg.blocked_block_size}")
    if cfg.blocked_clusters < 1:
        raise HmmLangError(f"--blocked-clusters must be at least 1, got {cfg.blocked_clusters}")
    for k in cfg.blocked_states:
        if cfg.blocked_block_size:
            m = k // cfg.blocked_block_size
        else:
            m = min(cfg.blocked_clusters, k)
        if m < 1 or k % m:
            raise HmmLangError(
                f"--blocked-states {k} must be a multiple of --blocked-clusters {cfg.blocked_clusters}"
            )
    if cfg.blocked_config is not None:
        _blocked_settings(cfg.blocked_config)


def _story_sums(token_log_probs: np.ndarray, stream: TokenStream) -> np.ndarray:
    """(S,) nats per story from a flat (N,) array of per-token log-probabilities."""
    return -np.add.reduceat(token_log_probs, stream.offsets[:-1])


def ngram_entries(train, valid, orders, bos: int, v: int) -> Iterator[Entry]:
    for order in orders:
        t0 = time.perf_counter()
        if order == 1:  # counted chunk by chunk: bounded memory on any corpus
            model, name, family = UnigramModel(v).fit_stream(train), "unigram", "unigram"
        else:
            model = KneserNeyModel(order, v, bos).fit_stream(train)
            name, family = f"KN {order}-gram", "n-gram"
        nats = _story_sums(model.token_log_probs(valid.stories()), valid)
        yield Entry(family, name, v, model.n_parameters, [nats], time.perf_counter() - t0)


def hmm_entries(
    train, valid, cfg: LadderConfig, v: int, cache: FitCache | None = None
) -> Iterator[Entry]:
    """Dense, cloned and blocked HMMs, lazily; fits found in ``cache`` are read back."""
    fit = (cache or FitCache(None)).fit
    common = dict(
        max_iters=cfg.max_iters,
        tol=cfg.tol,
        patience=cfg.patience,
        max_train_stories=cfg.max_train_stories,
        dev_fraction=cfg.dev_fraction,
    )
    for k in cfg.hmm_states:
        seeds = cfg.seeds if k <= cfg.multi_seed_max_states else cfg.seeds[:1]
        fits = [
            fit(
                train,
                valid,
                HMMFitConfig(states=k, init=cfg.hmm_init, seed=s, device=cfg.hmm_device, **common),
            )
            for s in seeds
        ]
        yield _fit_entry("dense HMM", f"HMM K={k}", v, k, fits, list(seeds))
    for c in cfg.cloned_clones:
        tried = [
            fit(
                train,
                valid,
                HMMFitConfig(
                    cloned=True, clones=c, allocation=cfg.cloned_allocation, smoothing=s, **common
                ),
            )
            for s in cfg.cloned_smoothings
        ]
        res = best_on_dev(tried, cfg.cloned_smoothings)
        n = res.n_states
        yield _fit_entry("cloned HMM", f"cloned HMM {n} states", v, n, [res], [0])
    extra = _blocked_settings(cfg.blocked_config)
    for k in cfg.blocked_states:
        m = k // cfg.blocked_block_size if cfg.blocked_block_size else min(cfg.blocked_clusters, k)
        hb = HMMFitConfig(**(common | extra | {"blocked": True, "states": k, "clusters": m}))
        res = fit(train, valid, hb)
        name = f"blocked HMM {k} states ({m} clusters, {res.choices.get('train', 'em')})"
        yield _fit_entry("blocked HMM", name, v, k, [res], [0])


def best_on_dev(fits: list[FitRecord], smoothings) -> FitRecord:
    """The fit with the best dev score, its EM pseudocount among its choices and the seconds
    of every fit tried (choosing cost them all)."""
    i = min(range(len(fits)), key=lambda j: fits[j].dev_bits_per_byte)
    if len(fits) > 1:
        scores = zip(smoothings, fits, strict=True)
        text = ", ".join(f"{s:g}: {f.dev_bits_per_byte:.4f}" for s, f in scores)
        log.info("EM pseudocount %g chosen on dev (dev bits/byte %s)", smoothings[i], text)
    return replace(
        fits[i],
        seconds=sum(f.seconds for f in fits),
        choices=fits[i].choices | {"em_smoothing": smoothings[i]},
    )


def _blocked_settings(path: str | None) -> dict:
    """HMMFitConfig settings from a YAML file, less the ones the ladder sets itself."""
    if path is None:
        return {}
    from hmm_lang.hmm.fit import fit_settings

    d = fit_settings(path)
    return {k: v for k, v in d.items() if k not in ("states", "clusters", "blocked", "cloned")}


def _fit_entry(family, name, v, states, fits: list[FitRecord], seeds) -> Entry:
    curves = []
    for seed, f in zip(seeds, fits, strict=True):
        log.info(
            "V=%d %s: %.4f bits/byte (%s%s)",
            v, name, f.valid_bits_per_byte, f.stop_reason, ", saved fit" if f.reused else "",
        )  # fmt: skip
        keys = ("iteration", "train_nats_per_token", "dev_nats_per_token", "seconds")
        for h in f.history:
            curves.append(
                {"vocab_size": v, "model": name, "seed": seed} | {k: h.get(k) for k in keys}
            )
    return Entry(
        family,
        name,
        v,
        fits[0].n_parameters,
        [f.valid_story_nats for f in fits],
        float(np.mean([f.seconds for f in fits])),
        states,
        {
            "seeds": seeds,
            "iterations": [f.iterations for f in fits],
            "stop_reason": [f.stop_reason for f in fits],
            "dev_bits_per_byte": [round(f.dev_bits_per_byte, 5) for f in fits],
            "seed_bits_per_byte": [round(f.valid_bits_per_byte, 5) for f in fits],
            "choices": fits[0].choices,
        },
        curves=curves,
    )


def transformer_entries(corpus: Corpus, runs: list[str]) -> list[Entry]:
    """Score trained transformer runs story by story (sliding window past n_ctx)."""
    from hmm_lang.runs import load_run
    from hmm_lang.transformer.data import story_nats
    from hmm_lang.transformer.train import fast_logits

    out = []
    for path in runs:
        run = load_run(path)
        valid = pretokenize(corpus.valid, run.path / "tokenizer")
        bos = run.tokenizer.convert_tokens_to_ids(BOS)
        t0 = time.perf_counter()
        nats = story_nats(fast_logits(run.model), valid, bos, run.config.model.n_ctx, run.device)
        m = run.config.model
        out.append(
            Entry(
                "transformer",
                f"transformer {m.n_layers}L d{m.d_model}",
                len(run.tokenizer),
                run.model.n_parameters(),
                [nats],
                time.perf_counter() - t0,
                extra={"run": str(run.path), "training_seconds": _training_seconds(run)},
                n_tokens=valid.n_tokens,
            )
        )
    return out


def _training_seconds(run) -> float | None:
    """Wall seconds of training from the run's logged throughput (None if not logged)."""
    rec = [m for m in run.metrics if "tokens_per_s" in m]
    if not rec:
        return None
    tokens = run.config.train.batch_tokens * run.config.train.log_interval
    return float(sum(tokens / m["tokens_per_s"] for m in rec))


def ladder_rows(
    corpus: Corpus,
    tokenizers_dir: str | Path,
    cfg: LadderConfig,
    curves: list | None = None,
    on_entry: Callable[[list[dict]], None] | None = None,
    fits_dir: str | Path | None = None,
    nats_dir: str | Path | None = None,
) -> list[dict]:
    """Fit and score every model of the ladder; one row per model (see :func:`summarise`).
    EM curves of every HMM fit are appended to ``curves`` if given. ``on_entry`` gets the rows
    so far after each model (n-grams first, so the KN5 differences are there from the first
    HMM on); the bootstrap draws depend only on the seed, so those rows are final. HMM fits
    are saved in ``fits_dir`` as they end and read back from it when the same fit is asked
    again (:mod:`hmm_lang.experiments.fit_cache`): a stopped ladder resumes. With ``nats_dir``,
    each model's per-story validation nats go to ``story_nats_{V}.npz`` there, after every
    model, for paired differences between any two (:mod:`hmm_lang.experiments.paired`)."""
    cache = FitCache(fits_dir)
    rows: list[dict] = []
    transformers = transformer_entries(corpus, cfg.transformer_runs) if cfg.transformer_runs else []
    for t in transformers:
        if t.vocab_size not in cfg.vocab_sizes:
            log.warning(
                "%s has vocab size %d, not in the ladder's %s: it gets no row",
                t.model, t.vocab_size, cfg.vocab_sizes,
            )  # fmt: skip
    for v in cfg.vocab_sizes:
        tok_dir = hf_dir(tokenizers_dir, v)
        train, valid = pretokenize(corpus.train, tok_dir), pretokenize(corpus.valid, tok_dir)
        bos = load_tokenizer(tok_dir).convert_tokens_to_ids(BOS)
        sbytes = story_bytes(valid)  # (S,), the same for every model of this vocab size
        entries: list[Entry] = []
        # lazy: each model is fitted when the loop reaches it
        for e in itertools.chain(
            ngram_entries(train, valid, cfg.ngram_orders, bos, v),
            hmm_entries(train, valid, cfg, v, cache),
            (t for t in transformers if t.vocab_size == v),
        ):
            entries.append(_unique_name(e, entries))
            if nats_dir is not None:
                path = Path(nats_dir) / f"story_nats_{v}.npz"
                nats = {x.model: x.nats for x in entries}
                save_story_nats(path, nats, sbytes)
            if curves is not None:
                curves += e.curves
            if on_entry is not None:
                on_entry(rows + summarise(entries, valid, cfg.n_boot))
        rows += summarise(entries, valid, cfg.n_boot)
    return rows


def _unique_name(e: Entry, entries: list[Entry]) -> Entry:
    """``e``, renamed if its name is taken at this vocab size (two runs of one transformer
    recipe): the run folder's name is added, then a count, so that the table, the per-story
    nats and a paired difference name each model alike."""
    taken = {x.model for x in entries}
    if e.model not in taken:
        return e
    base = f"{e.model} ({Path(str(e.extra.get('run', ''))).name or 'run'}"
    name, n = base + ")", 2
    while name in taken:
        name, n = f"{base} #{n})", n + 1
    return replace(e, model=name)


def check_resume(folder: str | Path) -> Path:
    """A ladder folder to resume, or a one-line error."""
    folder = Path(folder)
    cfg = folder / "config.yaml"
    if not cfg.is_file() or "ladder:" not in cfg.read_text():
        raise HmmLangError(
            f"--resume {folder}: not a ladder folder (no config.yaml with a ladder section); "
            "give a folder written by 'hmm-lang experiment ladder'"
        )
    return folder


def run_ladder(
    corpus: Corpus,
    tokenizers_dir,
    cfg: LadderConfig,
    out_dir,
    resume: str | Path | None = None,
) -> tuple[Path, list[dict]]:
    """Train tokenizers if needed, run the ladder, write ``<out_dir>/<time>_ladder/``; with
    ``resume``, work in that earlier ladder folder instead, reusing its finished HMM fits
    (its tables are rewritten for ``cfg``)."""
    from hmm_lang.atomic import write_text, write_yaml
    from hmm_lang.plots.export import save_figure
    from hmm_lang.plots.ladder import curves_figure, ladder_figure, seconds_figure
    from hmm_lang.records import INCOMPLETE, mark_complete, new_run_dir, write_environment
    from hmm_lang.stats import write_csv
    from hmm_lang.tokenizer import train_tokenizers

    validate_ladder(cfg)
    for run in cfg.transformer_runs:  # refuse a mismatched run before any work
        check_run_split(run, corpus)
    if resume is not None:
        run_dir = check_resume(resume)
        (run_dir / INCOMPLETE).touch()  # until the tables are rewritten
    else:
        run_dir = new_run_dir(out_dir, "ladder")
    write_yaml(run_dir / "config.yaml", {"corpus": corpus.describe(), "ladder": asdict(cfg)})
    write_environment(run_dir)
    train_tokenizers(corpus.train, cfg.vocab_sizes, tokenizers_dir)
    curves: list[dict] = []

    def write_tables(rows: list[dict]) -> None:
        """After every model: a kill loses at most the model being fitted."""
        write_csv(run_dir / "ladder.csv", rows)
        write_csv(run_dir / "curves.csv", curves)
        write_text(run_dir / "ladder.md", markdown_table(rows))

    rows = ladder_rows(
        corpus,
        tokenizers_dir,
        cfg,
        curves,
        on_entry=write_tables,
        fits_dir=run_dir / "fits",
        nats_dir=run_dir,
    )
    write_tables(rows)
    save_figure(ladder_figure(rows), run_dir, "ladder", png=False)
    save_figure(seconds_figure(rows), run_dir, "ladder_seconds", png=False)
    if curves:
        save_figure(curves_figure(curves), run_dir, "ladder_curves", png=False)
    mark_complete(run_dir)
    return run_dir, rows
