"""Copy rows of one ladder's CSV into another's, then rewrite that table's CSV and markdown.

Used when a rung was run later in its own ladder folder (same data, split and vocab size, so the
same validation stories and the same KN5: the paired differences stay valid). A row of the same
vocab size and model name is replaced; ``--drop`` removes rows that the copied ones supersede
(e.g. a partial seed set once all seeds are in one row).

    python docs/results/ladder_merge.py docs/results/ladder_1024.csv NEW/ladder.csv \
        --families transformer [--vocab-sizes 1024] [--suffix " (seeds 1, 2)"] [--drop MODEL ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hmm_lang.experiments.ladder_table import markdown_table, read_ladder_csv
from hmm_lang.stats import write_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="ladder CSV to extend (its .md is rewritten)")
    ap.add_argument("new", type=Path, help="ladder CSV to copy rows from")
    ap.add_argument("--families", nargs="+", required=True)
    ap.add_argument("--vocab-sizes", nargs="*", type=int, default=None)
    ap.add_argument("--models", nargs="*", default=None, help="only these model names")
    ap.add_argument("--suffix", default="", help="appended to the copied rows' model names")
    ap.add_argument("--drop", nargs="*", default=[], help="base rows (model names) to remove")
    args = ap.parse_args()
    base, new = read_ladder_csv(args.base), read_ladder_csv(args.new)
    kn5 = {r["vocab_size"]: r["bits_per_byte"] for r in base if r["model"] == "KN 5-gram"}
    take = [
        r | {"model": r["model"] + args.suffix}
        for r in new
        if r["family"] in args.families
        and (args.vocab_sizes is None or r["vocab_size"] in args.vocab_sizes)
        and (args.models is None or r["model"] in args.models)
    ]
    if not take:
        raise SystemExit(f"error: no rows of {args.new} match; check --families / --models")
    for r in take:  # the same validation stories: the same KN5 to the last digit
        v = r["vocab_size"]
        new_kn5 = [
            x["bits_per_byte"] for x in new if x["model"] == "KN 5-gram" and x["vocab_size"] == v
        ]
        if not new_kn5 or abs(new_kn5[0] - kn5.get(v, -1.0)) > 1e-9:
            raise SystemExit(
                f"error: {args.new} has no KN 5-gram equal to {args.base}'s at V={r['vocab_size']}; "
                "rows of another split cannot be merged"
            )
    missing = set(args.drop) - {r["model"] for r in base}
    if missing:
        raise SystemExit(f"error: --drop {sorted(missing)}: no such rows in {args.base}")
    keys = {(r["vocab_size"], r["model"]) for r in take}
    rows = [
        r for r in base if (r["vocab_size"], r["model"]) not in keys and r["model"] not in args.drop
    ] + take
    write_csv(args.base, rows)
    args.base.with_suffix(".md").write_text(markdown_table(rows))


if __name__ == "__main__":
    main()
