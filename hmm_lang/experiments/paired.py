"""Paired differences between any two models of a ladder, on the same validation stories.

The ladder's table gives every model a paired difference to the KN 5-gram; a claim such as "the
dense HMM is level with the cloned one" needs the difference between those two, on the same
story resamples (see :mod:`hmm_lang.experiments.intervals`). The ladder keeps each model's
per-story nats in ``story_nats_{V}.npz`` (one array per model, the seeds' mean where it has
several, and the stories' bytes), from which :func:`paired_rows` takes any pairs.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hmm_lang.errors import HmmLangError
from hmm_lang.experiments.intervals import bootstrap, paired_difference, resamples

BYTES = "__story_bytes__"  # the key of the stories' bytes (</s> included) in the npz


def save_story_nats(path: str | Path, nats: Mapping[str, np.ndarray], story_bytes) -> None:
    """Write ``{model: (S,) nats}`` and the (S,) story bytes to ``path`` (.npz), atomically."""
    from hmm_lang.atomic import atomic_path

    arrays = {name: np.asarray(x, dtype=np.float64) for name, x in nats.items()}
    arrays[BYTES] = np.asarray(story_bytes, dtype=np.float64)
    n = len(arrays[BYTES])
    bad = [name for name, x in arrays.items() if x.shape != (n,)]
    if bad:
        raise ValueError(f"per-story arrays of {bad} do not have the {n} stories' shape")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: no ".npz" added
        np.savez(f, **arrays)


def load_story_nats(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({model: (S,) nats}, (S,) story bytes)`` from a file :func:`save_story_nats` wrote."""
    path = Path(path)
    if not path.parent.is_dir():
        raise HmmLangError(f"{path.parent}: no such folder; give a ladder folder (--ladder)")
    if not path.is_file():
        have = sorted(p.name for p in path.parent.glob("story_nats_*.npz"))
        raise HmmLangError(
            f"no {path.name} in {path.parent} (it has: {', '.join(have) or 'none'}); a ladder "
            "writes one per vocab size; for an older ladder, rerun it with --resume (its saved "
            "fits are reused) or rebuild the file with docs/results/story_nats.py"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            nats = {k: z[k].copy() for k in z.files if k != BYTES}
            return nats, z[BYTES].copy()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise HmmLangError(f"{path}: not a per-story nats file ({e}); rewrite it") from e


def paired_rows(
    nats: Mapping[str, np.ndarray],
    story_bytes: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """One row per pair (a, b): each model's bits/byte with its interval and a minus b with the
    percentile interval over the same story resamples (so the stories' difficulty cancels)."""
    missing = sorted({m for pair in pairs for m in pair} - set(nats))
    if missing:
        raise HmmLangError(f"no per-story nats for {missing}; the models there: {sorted(nats)}")
    w = resamples(len(story_bytes), n_boot, seed)
    rows = []
    for a, b in pairs:
        ia, ib = bootstrap(nats[a], story_bytes, w), bootstrap(nats[b], story_bytes, w)
        d = paired_difference(nats[a], nats[b], story_bytes, w)
        rows.append(
            {
                "a": a, "b": b,
                "a_bits_per_byte": ia.value, "a_lo": ia.lo, "a_hi": ia.hi,
                "b_bits_per_byte": ib.value, "b_lo": ib.lo, "b_hi": ib.hi,
                "diff": d.value, "diff_lo": d.lo, "diff_hi": d.hi,
                # the share of stories on which a is better (fewer nats) than b
                "a_wins": float(np.mean(nats[a] < nats[b])),
            }
        )  # fmt: skip
    return rows


def paired_markdown(rows: Sequence[dict], title: str | None = None) -> str:
    """The rows as a markdown table (bits/byte; a minus b with its 95% story-bootstrap interval)."""
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| a | b | a bits/byte [95% CI] | b bits/byte [95% CI] | a minus b [95% CI] "
        "| stories where a is better |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['a']} | {r['b']} | {r['a_bits_per_byte']:.4f} [{r['a_lo']:.4f}, {r['a_hi']:.4f}]"
            f" | {r['b_bits_per_byte']:.4f} [{r['b_lo']:.4f}, {r['b_hi']:.4f}]"
            f" | {r['diff']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}] | {r['a_wins']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def best_hmm_pairs(rows: Sequence[dict], vocab_size: int) -> list[tuple[str, str]]:
    """(best HMM, other) for every n-gram and transformer row of one vocab size of a ladder's
    ``rows``: where the best HMM stands against each baseline, as paired differences."""
    at_v = [r for r in rows if r["vocab_size"] == vocab_size]
    hmms = [r for r in at_v if r["family"].endswith("HMM")]
    if not hmms:
        raise HmmLangError(f"the ladder has no HMM row at V={vocab_size}")
    best = min(hmms, key=lambda r: r["bits_per_byte"])["model"]
    others = [r["model"] for r in at_v if r["family"] in ("n-gram", "transformer")]
    return [(best, m) for m in others]
