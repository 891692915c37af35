"""Per-story validation nats of the published ladder's models, for paired differences.

The ladders behind ``ladder_{V}.csv`` ran before a ladder kept its per-story nats
(``story_nats_{V}.npz``), and several rows were merged from ladders of their own. This script
rebuilds that file for one vocab size: the n-grams refitted (seconds), the transformer runs
rescored with the ladder's scorer, and the HMMs read from their saved fits (the ``fits/*.npz``
of their ladder folders, one per seed; no refit). Every model's bits/byte is checked against
its row of ``ladder_{V}.csv`` (``--check``): a saved fit of another split or model fails there.
From the repo root, e.g.:

    python docs/results/story_nats.py --data ../shared/data/tinystories_dev.txt --vocab-size 4096 \
        --fit "HMM K=1024=<ladder>/fits/<key>.npz" --runs <transformer run> \
        --check docs/results/ladder_4096.csv --out docs/results/story_nats_4096.npz
    hmm-lang experiment paired --ladder docs/results --vocab-size 4096 \
        --pair "HMM K=1024" "cloned HMM 16360 states"
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from hmm_lang.corpus import load_corpus
from hmm_lang.experiments.fit_cache import FitRecord
from hmm_lang.experiments.intervals import bits_per_byte
from hmm_lang.experiments.ladder import ngram_entries, transformer_entries
from hmm_lang.experiments.ladder_table import read_ladder_csv, story_bytes
from hmm_lang.experiments.paired import save_story_nats
from hmm_lang.pretokenize import pretokenize
from hmm_lang.runs import check_run_split
from hmm_lang.tokenizer import BOS, hf_dir, load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--vocab-size", type=int, required=True)
    ap.add_argument("--tokenizers-dir", default="tokenizers")
    ap.add_argument("--orders", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    ap.add_argument(
        "--fit",
        action="append",
        default=[],
        metavar="NAME=NPZ[,NPZ...]",
        help="a ladder row's name and its saved fits (several: seeds, averaged like the ladder)",
    )
    ap.add_argument("--runs", nargs="*", default=[], help="transformer run folders")
    ap.add_argument("--check", required=True, help="the ladder CSV whose rows these must match")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    corpus = load_corpus(args.data, None, valid_fraction=0.1, seed=0)  # the CLI's defaults
    for run in args.runs:
        check_run_split(run, corpus)
    tok_dir = hf_dir(args.tokenizers_dir, args.vocab_size)
    train, valid = pretokenize(corpus.train, tok_dir), pretokenize(corpus.valid, tok_dir)
    bos = load_tokenizer(tok_dir).convert_tokens_to_ids(BOS)
    nats = {e.model: e.nats for e in ngram_entries(train, valid, args.orders, bos, args.vocab_size)}
    row_of_run = {r.get("run"): r["model"] for r in read_ladder_csv(args.check)}
    for e in transformer_entries(corpus, args.runs):  # the row's name (e.g. "(2,800 steps)")
        nats[row_of_run.get(e.extra["run"], e.model)] = e.nats
    for spec in args.fit:
        name, paths = spec.rsplit("=", 1)
        recs = [FitRecord.load(p) for p in paths.split(",")]
        nats[name] = np.mean([r.valid_story_nats for r in recs], axis=0)
    sb = story_bytes(valid)
    table = {r["model"]: r["bits_per_byte"] for r in read_ladder_csv(args.check)}
    for name, x in nats.items():
        got = bits_per_byte(x, sb)
        if name not in table or abs(got - table[name]) > 1e-6:
            raise SystemExit(f"error: {name}: {got:.6f} bits/byte, its row says {table.get(name)}")
        logging.info("%s: %.6f bits/byte, as its row", name, got)
    save_story_nats(args.out, nats, sb)
    logging.info("wrote %d models' per-story nats to %s", len(nats), args.out)


if __name__ == "__main__":
    main()
