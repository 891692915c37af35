"""Copy rows of one ladder's CSV into another's, then rewrite that table's CSV and markdown.

Used when a rung was run later in its own ladder folder (same data, split and vocab size, so the
same validation stories and the same KN5: the paired differences stay valid). A row of the same
vocab size and model name is replaced; ``--drop`` removes rows that the copied ones supersede
(e.g. a partial seed set once all seeds are in one row). ``--curves`` also puts the copied
models' EM curves (``curves.csv`` beside NEW) into that curve CSV, replacing theirs. Where BASE's
folder holds per-story nats (``story_nats_{V}.npz``, for ``hmm-lang experiment paired``), the
copied models' nats from NEW's folder go there too (a NEW ladder older than those files has
none: it says so, and ``story_nats.py`` rebuilds them).

    python docs/results/ladder_merge.py docs/results/ladder_1024.csv NEW/ladder.csv \
        --families transformer [--vocab-sizes 1024] [--suffix " (seeds 1, 2)"] [--drop MODEL ...] \
        [--curves docs/results/ladder_1024_2048_em_curves.csv]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from hmm_lang.atomic import write_text
from hmm_lang.experiments.ladder_table import markdown_table, read_ladder_csv
from hmm_lang.experiments.paired import load_story_nats, save_story_nats
from hmm_lang.stats import write_csv


def merge_curves(path: Path, new_curves: Path, models: dict[tuple[int, str], str]) -> int:
    """Replace in ``path`` the curves of ``models`` ((V, model in NEW) -> name in the table)
    with NEW's; returns the number of curve rows copied."""
    if not new_curves.exists():
        raise SystemExit(f"error: no {new_curves} beside the new ladder; leave out --curves")
    with open(path, newline="") as f:
        base = list(csv.DictReader(f))
    with open(new_curves, newline="") as f:
        new = list(csv.DictReader(f))
    take = [
        r | {"model": models[(int(r["vocab_size"]), r["model"])]}
        for r in new
        if (int(r["vocab_size"]), r["model"]) in models
    ]
    names = {(int(r["vocab_size"]), r["model"]) for r in take}
    keep = [r for r in base if (int(r["vocab_size"]), r["model"]) not in names]
    write_csv(path, keep + take)
    return len(take)


def merge_nats(base_dir: Path, new_dir: Path, renamed: dict, drop: list[str]) -> None:
    """Copy the per-story nats of ``renamed`` ((V, model in NEW) -> name in the table) from
    NEW's folder into BASE's ``story_nats_{V}.npz``; ``drop``ped models leave it."""
    for v in sorted({v for v, _ in renamed}):
        base_path, new_path = base_dir / f"story_nats_{v}.npz", new_dir / f"story_nats_{v}.npz"
        if not base_path.exists():
            continue
        nats, sb = load_story_nats(base_path)
        if not new_path.exists():
            print(f"{base_path}: not updated ({new_path} missing; rebuild with story_nats.py)")
            continue
        new_nats, new_sb = load_story_nats(new_path)
        if not np.array_equal(sb, new_sb):
            raise SystemExit(f"error: {new_path} scores other stories than {base_path}")
        for (vv, model), name in renamed.items():
            if vv == v and model in new_nats:
                nats[name] = new_nats[model]
        save_story_nats(base_path, {k: x for k, x in nats.items() if k not in drop}, sb)
        print(f"{base_path}: per-story nats updated")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="ladder CSV to extend (its .md is rewritten)")
    ap.add_argument("new", type=Path, help="ladder CSV to copy rows from")
    ap.add_argument("--families", nargs="+", required=True)
    ap.add_argument("--vocab-sizes", nargs="*", type=int, default=None)
    ap.add_argument("--models", nargs="*", default=None, help="only these model names")
    ap.add_argument("--suffix", default="", help="appended to the copied rows' model names")
    ap.add_argument("--drop", nargs="*", default=[], help="base rows (model names) to remove")
    ap.add_argument("--curves", type=Path, default=None, help="EM-curve CSV to update as well")
    args = ap.parse_args()
    base, new = read_ladder_csv(args.base), read_ladder_csv(args.new)
    kn5 = {r["vocab_size"]: r["bits_per_byte"] for r in base if r["model"] == "KN 5-gram"}
    picked = [
        r
        for r in new
        if r["family"] in args.families
        and (args.vocab_sizes is None or r["vocab_size"] in args.vocab_sizes)
        and (args.models is None or r["model"] in args.models)
    ]
    take = [r | {"model": r["model"] + args.suffix} for r in picked]
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
    if args.curves is not None:
        renamed = {(r["vocab_size"], r["model"]): r["model"] + args.suffix for r in picked}
        n = merge_curves(args.curves, args.new.with_name("curves.csv"), renamed)
        print(f"{args.curves}: {n} curve rows copied")
    write_csv(args.base, rows)
    write_text(args.base.with_suffix(".md"), markdown_table(rows))
    renamed = {(r["vocab_size"], r["model"]): r["model"] + args.suffix for r in picked}
    merge_nats(args.base.parent, args.new.parent, renamed, args.drop)


if __name__ == "__main__":
    main()
