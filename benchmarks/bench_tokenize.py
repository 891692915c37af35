"""Tokenizer training and pretokenizing throughput (MB/s), bytes per token at each vocab size.

    python benchmarks/bench_tokenize.py [--data ../shared/data/tinystories_dev.txt]

Anchor for pretokenizing: encoding the same stories one at a time with the same Rust tokenizer
(``Tokenizer.encode`` in a Python loop), in the same process; the ratio is printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hmm_lang.corpus import load_corpus
from hmm_lang.pretokenize import pretokenize
from hmm_lang.tokenizer import hf_dir, train_tokenizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinystories_dev.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "default")
    ap.add_argument("--vocab-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    args = ap.parse_args()
    from tokenizers import Tokenizer

    corpus = load_corpus(args.data)
    train_stories = list(corpus.train.iter_stories())
    train_mb = sum(len(s.encode()) for s in train_stories) / 1e6
    print(f"data: {corpus.describe()}  train {train_mb:.2f} MB, {len(train_stories)} stories")
    print(
        f"{'V':>6} {'train MB/s':>10} {'pretok MB/s':>12} {'loop MB/s':>10} {'ratio':>6} {'bytes/token':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.vocab_sizes:
            t0 = time.perf_counter()
            train_tokenizer(corpus.train, v, tmp, force=True)
            t_train = time.perf_counter() - t0
            t0 = time.perf_counter()
            stream = pretokenize(corpus.train, hf_dir(tmp, v), force=True)
            t_pre = time.perf_counter() - t0
            tok = Tokenizer.from_file(str(hf_dir(tmp, v) / "tokenizer.json"))
            t0 = time.perf_counter()
            for s in train_stories:
                tok.encode(s, add_special_tokens=False)
            t_loop = time.perf_counter() - t0
            valid = pretokenize(corpus.valid, hf_dir(tmp, v))
            bpt = valid.story_bytes.sum() / (valid.n_tokens - valid.n_stories)
            print(
                f"{v:>6} {train_mb / t_train:>10.2f} {train_mb / t_pre:>12.2f} "
                f"{train_mb / t_loop:>10.2f} {t_loop / t_pre:>6.2f} {bpt:>12.3f}"
            )
            del stream, valid


if __name__ == "__main__":
    main()
