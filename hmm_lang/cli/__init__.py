"""The ``hmm-lang`` command: long jobs from the shell. Every subcommand has ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hmm_lang.cli.data_args import add_data_args, corpus_from_args
from hmm_lang.errors import HmmLangError
from hmm_lang.tokenizer import DEFAULT_VOCAB_SIZES

log = logging.getLogger("hmm_lang")


def cmd_tokenizers(args) -> None:
    from hmm_lang.tokenizer import load_tokenizer, token_pieces, train_tokenizers

    corpus = corpus_from_args(args)
    log.info("corpus: %s", corpus.describe())
    dirs = train_tokenizers(corpus.train, args.vocab_sizes, args.out_dir, force=args.force)
    for v, d in dirs.items():
        pieces = token_pieces(load_tokenizer(d), "Hello, world!")
        print(f"V={v}: {d}  'Hello, world!' -> {pieces}")


def cmd_stats(args) -> None:
    from hmm_lang.plots.token_stats import rank_frequency_figure
    from hmm_lang.records import mark_complete, new_run_dir
    from hmm_lang.stats import collect_token_stats, save_token_stats, stats_table
    from hmm_lang.tokenizer import train_tokenizers

    corpus = corpus_from_args(args)
    train_tokenizers(corpus.train, args.vocab_sizes, args.tokenizers_dir)
    stats = collect_token_stats(corpus.valid, args.tokenizers_dir, args.vocab_sizes)
    out = Path(args.out) if args.out else new_run_dir(args.records_dir, "stats")
    out.mkdir(parents=True, exist_ok=True)
    for path in save_token_stats(stats, out, rank_frequency_figure(stats)):
        print(f"wrote {path}")
    mark_complete(out)
    for row in stats_table(stats):
        print(row)


def cmd_run(args) -> None:
    if args.dry_run:
        from hmm_lang.dryrun import plan_run
        from hmm_lang.dryrun_table import format_plan

        plan = plan_run(
            data=args.data,
            valid=args.valid,
            profile=args.profile,
            max_stories=args.max_stories,
            seed=args.seed,
            tokenizers_dir=args.tokenizers_dir,
            valid_fraction=args.valid_fraction,
        )
        print(format_plan(plan))
        return
    from hmm_lang.pipeline import run_pipeline

    run_dir = run_pipeline(
        data=args.data,
        valid=args.valid,
        profile=args.profile,
        out_dir=args.out_dir,
        tokenizers_dir=args.tokenizers_dir,
        force=args.force,
        max_stories=args.max_stories,
        seed=args.seed,
        valid_fraction=args.valid_fraction,
    )
    print((run_dir / "summary.md").read_text())
    print(f"run folder: {run_dir}")


def cmd_notebooks(args) -> None:
    import os

    from hmm_lang.notebook import execute_notebooks
    from hmm_lang.runs import find_run

    smoke = args.smoke or os.environ.get("HMM_LANG_SMOKE", "0") == "1"
    records = args.records_dir
    if records is None:
        home = os.environ.get("HMM_LANG_HOME")
        records = str(Path(home) / "records") if home else "records"
    try:
        run = find_run(args.run, records)
    except HmmLangError:
        if not smoke:
            raise
        run = None  # smoke mode: the notebooks train a tiny run of their own
    out = None if run is not None else Path(records)
    for path in execute_notebooks(run, out_dir=out, smoke=smoke, names=args.only):
        print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hmm-lang", description="HMMs, n-grams and transformers on TinyStories."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tokenizers", help="train byte-level BPE tokenizers")
    add_data_args(p)
    p.add_argument("--vocab-sizes", type=int, nargs="+", default=list(DEFAULT_VOCAB_SIZES))
    p.add_argument("--out-dir", default="tokenizers")
    p.add_argument("--force", action="store_true", help="retrain even if an identical one exists")
    p.set_defaults(func=cmd_tokenizers)

    p = sub.add_parser("stats", help="token statistics: rank-frequency figure and tables")
    add_data_args(p)
    p.add_argument("--vocab-sizes", type=int, nargs="+", default=list(DEFAULT_VOCAB_SIZES))
    p.add_argument("--tokenizers-dir", default="tokenizers")
    p.add_argument("--records-dir", default="records")
    p.add_argument("--out", default=None, help="output folder (default records/<time>_stats)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("run", help="the main job: the whole study in one run folder")
    add_data_args(p)
    p.add_argument("--profile", choices=["smoke", "cpu", "gpu"], default="cpu")
    p.add_argument("--out-dir", default="records")
    p.add_argument("--tokenizers-dir", default="tokenizers")
    p.add_argument("--force", action="store_true", help="redo stages whose outputs exist")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print every stage with its sizes, peak memory and time (estimates); run nothing, "
        "create no folder, download nothing",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "notebooks", help="execute the notebooks against a run; save copies and HTML"
    )
    p.add_argument("--run", default=None, help="transformer run folder (default: the newest)")
    p.add_argument(
        "--records-dir", default=None, help="default: $HMM_LANG_HOME/records, else records"
    )
    p.add_argument("--only", nargs="*", default=None, help="notebook names, e.g. 03_embeddings")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes (also HMM_LANG_SMOKE=1); no run needed"
    )
    p.set_defaults(func=cmd_notebooks)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Subcommands defined beside the code they drive (HMMs, n-grams, training)."""
    from hmm_lang.cli import experiments, models

    return [*models.REGISTER, experiments.register]


def _close_progress_bars() -> None:
    """Close the progress bars an exception left open, so that the error line starts a line
    of its own instead of continuing a bar's."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # our INFO lines only: other libraries' (torch's compile caches...) stay at WARNING
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("hmm_lang").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from hmm_lang.records import discard_incomplete

    try:
        args.func(args)
    except HmmLangError as e:
        _close_progress_bars()
        _discarded(discard_incomplete())
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        removed = discard_incomplete()
        _discarded(removed)
        print(
            "error: interrupted (Ctrl-C); finished outputs are kept, rerun to resume",
            file=sys.stderr,
        )
        return 130
    except OSError as e:
        if args.verbose:
            raise
        _close_progress_bars()
        _discarded(discard_incomplete())
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    return 0


def _discarded(paths) -> None:
    for p in paths:
        logging.getLogger("hmm_lang").info("removed the unfinished run folder %s", p)


def os_error_message(e: OSError) -> str:
    """One line for a failed read or write, naming the path and what to do."""
    import errno

    where = e.filename or "a file"
    if e.errno == errno.ENOSPC:
        return (
            f"no space left on the device writing {where}; free space or choose another --out-dir"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where} ({e.strerror}); choose a writable location or fix its permissions"
    if e.errno == errno.ENOTDIR:
        return f"{where}: a file stands where a folder is needed; choose another path"
    return f"{where}: {e.strerror or e}"
