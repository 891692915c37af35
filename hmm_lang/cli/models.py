"""``hmm-lang`` subcommands for models: ``fit-hmm`` and ``ngram``."""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields

log = logging.getLogger("hmm_lang")


def _streams(args):
    """Train and validation token streams of ``--data``/``--valid`` under ``--tokenizer``."""
    from hmm_lang.cli.data_args import corpus_from_args
    from hmm_lang.pretokenize import pretokenize

    corpus = corpus_from_args(args)
    log.info("corpus: %s", corpus.describe())
    return pretokenize(corpus.train, args.tokenizer), pretokenize(corpus.valid, args.tokenizer)


def _streams_once(args):
    """:func:`_streams`; under torchrun rank 0 encodes first and the other ranks then read its
    pretokenize cache: encoding together, the ranks race on the same cache path (each one's
    writer clears the other's half-written temporary as stale and a rank fails)."""
    from hmm_lang.hmm.distributed import is_distributed, is_main_process

    if not is_distributed():
        return _streams(args)
    import torch.distributed as dist

    streams = _streams(args) if is_main_process() else None
    dist.barrier()  # a failing rank 0 exits and torchrun stops the ranks waiting here
    return streams or _streams(args)


def _record(args, name: str, config: dict):
    from hmm_lang.atomic import write_yaml
    from hmm_lang.records import new_run_dir, write_environment

    run_dir = new_run_dir(args.out_dir, name)
    data = {k: getattr(args, k) for k in ("data", "valid", "max_stories", "seed", "tokenizer")}
    write_yaml(run_dir / "config.yaml", {"data": data, "model": config})  # before any work
    write_environment(run_dir)
    return run_dir


def cmd_fit_hmm(args) -> None:
    from hmm_lang.atomic import write_json
    from hmm_lang.hmm.distributed import init_from_env, is_main_process
    from hmm_lang.hmm.fit import HMMFitConfig, fit_hmm, fit_settings
    from hmm_lang.records import mark_complete

    names = {f.name for f in fields(HMMFitConfig)}
    given = fit_settings(args.config) if args.config else {}
    given |= {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = HMMFitConfig(**given)
    cfg.validate()
    from hmm_lang.hmm.fit import check_fit_memory
    from hmm_lang.tokenizer import load_tokenizer

    check_fit_memory(cfg, len(load_tokenizer(args.tokenizer)))  # before any work or folder
    init_from_env()  # under torchrun: data-parallel EM, one shard of the stories per process
    if cfg.init == "lvd" and cfg.run:
        from hmm_lang.cli.data_args import corpus_from_args
        from hmm_lang.runs import check_run_split

        check_run_split(
            cfg.run, corpus_from_args(args)
        )  # its training stories must not be our valid
    train, valid = _streams_once(args)
    name = f"chmm{cfg.clones}" if cfg.cloned else f"hmm{cfg.states}"
    name = f"bhmm{cfg.states}x{cfg.clusters}" if cfg.blocked else name
    if not is_main_process():  # only rank 0 makes the run folder and writes the outputs
        fit_hmm(train, valid, cfg, progress=False)
        return
    run_dir = _record(args, name, vars(cfg))
    result = fit_hmm(train, valid, cfg)
    result.model.save(run_dir / "model.pt", vars(cfg))
    write_json(run_dir / "metrics.json", result.metrics)
    mark_complete(run_dir)
    m = result.metrics
    print(
        f"{name}: {m['bits_per_byte']:.4f} bits/byte ({m['scored_on']}), dev "
        f"{m['dev_bits_per_byte']:.4f}, {m['n_states']} states, {m['iterations']} iterations "
        f"(stop: {m['stop_reason']}), {m['seconds']:.1f} s -> {run_dir}"
    )


def cmd_ngram(args) -> None:
    from hmm_lang.atomic import write_json
    from hmm_lang.errors import HmmLangError
    from hmm_lang.ngram import fit_and_score
    from hmm_lang.records import mark_complete
    from hmm_lang.tokenizer import BOS, load_tokenizer

    if args.order < 1:
        raise HmmLangError(f"--order must be at least 1 (1 is the unigram), got {args.order}")
    train, valid = _streams(args)
    bos = load_tokenizer(args.tokenizer).convert_tokens_to_ids(BOS)
    run_dir = _record(
        args, f"kn{args.order}" if args.order > 1 else "unigram", {"order": args.order}
    )
    model, sc, seconds = fit_and_score(train, valid, args.order, bos)
    if args.order > 1:
        model.save(run_dir / "model.npz")
    metrics = sc.as_dict() | {"seconds": seconds, "n_parameters": model.n_parameters}
    write_json(run_dir / "metrics.json", metrics)
    mark_complete(run_dir)
    print(f"order {args.order}: {sc.bits_per_byte:.4f} bits/byte -> {run_dir}")


def _common(p: argparse.ArgumentParser) -> None:
    from hmm_lang.cli.data_args import add_data_args

    add_data_args(p)
    p.add_argument("--tokenizer", required=True, help="HF_custom_tokenizer_{V} (or custom_) folder")
    p.add_argument("--out-dir", default="records")


def register_fit_hmm(sub) -> None:
    p = sub.add_parser(
        "fit-hmm", help="fit a dense, cloned or blocked HMM and score it in bits per byte"
    )
    _common(p)
    p.add_argument(
        "--config", default=None, help="YAML of fit settings (configs/hmm_best.yaml); flags win"
    )
    p.add_argument("--states", type=int, default=None, help="K, dense or blocked (default 64)")
    p.add_argument(
        "--cloned", action="store_true", default=None, help="cloned HMM (Dedieu et al. 2019)"
    )
    p.add_argument("--clones", type=int, default=None, help="clones per token (default 16)")
    p.add_argument(
        "--blocked",
        action="store_true",
        default=None,
        help="blocked-emission HMM (Chiu & Rush 2020): --states split over --clusters",
    )
    p.add_argument("--clusters", type=int, default=None, help="token clusters M (default 128)")
    p.add_argument("--clustering", choices=["exchange", "context", "auto"], default=None)
    p.add_argument(
        "--train", choices=["em", "grad"], default=None, help="blocked: EM or AdamW (compact)"
    )
    p.add_argument("--lr", type=float, default=None, help="blocked grad: AdamW lr (0.01)")
    p.add_argument("--state-dropout", type=float, default=None, help="blocked grad (0.5)")
    p.add_argument("--embed-dim", type=int, default=None, help="blocked grad (128)")
    p.add_argument("--escape", type=float, default=None, help="cloned/blocked escape during EM")
    p.add_argument("--allocation", choices=["uniform", "frequency", "auto"], default=None)
    p.add_argument(
        "--escape-model", choices=["kn-bigram", "unigram"], default=None, help="cloned HMM"
    )
    p.add_argument(
        "--max-iters",
        "--iters",
        dest="max_iters",
        type=int,
        default=None,
        help="EM iteration cap (default 300); EM stops earlier once dev stops improving",
    )
    p.add_argument("--tol", type=float, default=None, help="dev gain (nats/token) that counts")
    p.add_argument("--patience", type=int, default=None, help="iterations below --tol to stop")
    p.add_argument(
        "--init", default=None, help="split (default), class-bigram, lvd (needs --run), random"
    )
    p.add_argument("--run", default=None, help="transformer run folder for --init lvd")
    p.add_argument("--smoothing", type=float, default=None, help="Dirichlet pseudocount")
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--dev-fraction", type=float, default=None, help="training stories for dev")
    p.add_argument("--dev-seed", type=int, default=None)
    p.add_argument(
        "--online",
        action="store_true",
        default=None,
        help="stepwise online EM (--max-iters = epochs)",
    )
    p.add_argument("--minibatch-stories", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--max-train-stories", type=int, default=None)
    p.add_argument(
        "--no-memory-check",
        dest="check_memory",
        action="store_false",
        default=None,
        help="skip the free-RAM check before a large dense fit",
    )
    p.set_defaults(func=cmd_fit_hmm)


def register_ngram(sub) -> None:
    p = sub.add_parser("ngram", help="unigram (--order 1) or Kneser-Ney n-gram baseline")
    _common(p)
    p.add_argument("--order", type=int, default=3)
    p.set_defaults(func=cmd_ngram)


def cmd_train(args) -> None:
    from hmm_lang.config import RunConfig, apply_overrides, load_config
    from hmm_lang.transformer.train import train

    if args.resume:
        run_dir = train(resume=args.resume, progress=True)
    else:
        cfg = load_config(args.config) if args.config else RunConfig()
        flags = {"data": args.data, "valid": args.valid, "tokenizer": args.tokenizer}
        flags["max_stories"] = args.max_stories
        overrides = [f"data.{k}={v}" for k, v in flags.items() if v is not None]
        cfg = apply_overrides(cfg, overrides + list(args.overrides))
        run_dir = train(cfg, args.out_dir)
    print(f"run folder: {run_dir}")


def register_train(sub) -> None:
    p = sub.add_parser("train", help="train the TransformerLens transformer; records/<time>/")
    p.add_argument("--config", default=None, help="YAML config (configs/tiny.yaml, ...)")
    p.add_argument("--data", default=None, help="overrides data.data of the config")
    p.add_argument("--valid", default=None)
    p.add_argument("--tokenizer", default=None, help="overrides data.tokenizer")
    p.add_argument("--max-stories", type=int, default=None)
    p.add_argument("--out-dir", default="records")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a killed run")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=3e-4")
    p.set_defaults(func=cmd_train)


def cmd_analyze(args) -> None:
    from hmm_lang.errors import HmmLangError
    from hmm_lang.plots.run_figures import (
        circuit_figures,
        patterns_figure,
        pca_figures,
        save_all,
        similarity_figure,
    )
    from hmm_lang.runs import find_run, load_run, run_streams, token_counts

    sizes = ("k", "top_n", "max_tokens", "pca_tokens")
    bad = [f"--{n.replace('_', '-')}" for n in sizes if getattr(args, n) < 1]
    if bad:
        raise HmmLangError(f"{', '.join(bad)} must be at least 1")
    run = load_run(find_run(args.run, args.records_dir))
    train, valid = run_streams(run)
    counts = token_counts(train, len(run.tokenizer))
    figs = {}
    for which in ("embed", "unembed"):
        for ordering in ("id", "frequency", "cluster"):
            figs[f"{which}_similarity_{ordering}"] = similarity_figure(
                run.model,
                run.tokenizer,
                which,
                ordering,
                args.k,
                counts,
                max_tokens=args.max_tokens,
            )
    for layer in range(run.config.model.n_layers):
        for head in range(run.config.model.n_heads):
            figs.update(circuit_figures(run.model, run.tokenizer, counts, layer, head, args.top_n))
    figs["attention_patterns"] = patterns_figure(run.model, run.tokenizer, valid.story(0))
    figs.update(pca_figures(run.model, run.tokenizer, valid, counts, n_tokens=args.pca_tokens))
    paths = save_all(figs, run.path, png=not args.no_png)
    print(f"{len(paths)} files in {run.path / 'figures'}")


def register_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="embedding, circuit and residual-stream figures of a run")
    p.add_argument("run", nargs="?", default=None, help="run folder (default: the newest)")
    p.add_argument("--records-dir", default="records")
    p.add_argument("--k", type=int, default=8, help="coarse-graining blocks")
    p.add_argument("--top-n", type=int, default=50, help="tokens in the QK/OV circuits")
    p.add_argument("--max-tokens", type=int, default=1024, help="tokens in similarity figures")
    p.add_argument("--pca-tokens", type=int, default=100_000)
    p.add_argument("--no-png", action="store_true")
    p.set_defaults(func=cmd_analyze)


REGISTER = [register_fit_hmm, register_ngram, register_train, register_analyze]
