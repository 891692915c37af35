"""The data options every data-reading subcommand shares, and the corpus they name."""

from __future__ import annotations

import argparse


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="default",
        help="'default' (embedded synthetic stories), 'tinystories' (Hugging Face hub), or a path "
        "(.txt with <|endoftext|> separators, .jsonl/.json, .parquet, save_to_disk folder)",
    )
    g.add_argument("--valid", default=None, help="validation file; default: carve 10%% off --data")
    g.add_argument("--max-stories", type=int, default=None, help="cap on training stories")
    g.add_argument("--valid-fraction", type=float, default=0.1)
    g.add_argument("--seed", type=int, default=0, help="seed of the split and the generator")


def corpus_from_args(args):
    from hmm_lang.corpus import load_corpus

    return load_corpus(
        args.data,
        args.valid,
        max_stories=args.max_stories,
        valid_fraction=args.valid_fraction,
        seed=args.seed,
    )
