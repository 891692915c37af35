"""The ladder's table: story-bootstrap intervals, paired differences to the KN 5-gram, markdown."""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmm_lang.experiments.intervals import bootstrap, paired_difference, resamples
from hmm_lang.pretokenize import TokenStream

REFERENCE = "KN 5-gram"  # paired differences are taken against this model


@dataclass
class Entry:
    """One model of the ladder (or several seeds of it): per-story nats on validation."""

    family: str
    model: str
    vocab_size: int
    n_parameters: int
    story_nats: list[np.ndarray]  # one (S,) array per seed
    seconds: float
    states: int | None = None
    extra: dict = field(default_factory=dict)
    n_tokens: int | None = None  # tokens scored, under the model's own tokenizer
    curves: list[dict] = field(default_factory=list)  # EM iterations (train and dev) per seed

    @property
    def nats(self) -> np.ndarray:
        return np.mean(self.story_nats, axis=0)


def story_bytes(valid: TokenStream) -> np.ndarray:
    """(S,) bytes of each validation story, + 1 for its </s> (which every model predicts)."""
    return valid.story_bytes.astype(np.float64) + 1


def summarise(entries: list[Entry], valid: TokenStream, n_boot: int, seed: int = 0) -> list[dict]:
    """Rows with story-bootstrap intervals and paired differences to the KN 5-gram."""
    sbytes = story_bytes(valid)
    w = resamples(valid.n_stories, n_boot, seed)
    ref = next((e for e in entries if e.model == REFERENCE), None)
    rows = []
    for e in entries:
        bpb = bootstrap(e.nats, sbytes, w)
        row = {
            "vocab_size": e.vocab_size,
            "family": e.family,
            "model": e.model,
            "states": e.states,
            "n_parameters": int(e.n_parameters),
            "bits_per_byte": bpb.value,
            "bpb_lo": bpb.lo,
            "bpb_hi": bpb.hi,
            "n_seeds": len(e.story_nats),
            "seed_sd": float(
                np.std([s.sum() for s in e.story_nats], ddof=1) / sbytes.sum() / np.log(2)
            )
            if len(e.story_nats) > 1
            else None,
            "bits_per_token": float(e.nats.sum() / (e.n_tokens or valid.n_tokens) / np.log(2)),
            "seconds": round(e.seconds, 2),
        }
        if ref is not None:
            d = paired_difference(e.nats, ref.nats, sbytes, w)
            row |= {"diff_kn5": d.value, "diff_lo": d.lo, "diff_hi": d.hi}
        row |= {k: v for k, v in e.extra.items()}
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| vocab | family | model | parameters | bits/byte [95% CI] | minus KN5 [95% CI] "
        "| seeds | iterations | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["vocab_size"], -r["bits_per_byte"])):
        diff = (
            f"{r['diff_kn5']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}]"
            if r.get("diff_kn5") is not None
            else "-"
        )
        its = r.get("iterations")
        lines.append(
            f"| {r['vocab_size']} | {r['family']} | {r['model']} | {r['n_parameters']:,} | "
            f"{r['bits_per_byte']:.4f} [{r['bpb_lo']:.4f}, {r['bpb_hi']:.4f}] | {diff} | "
            f"{r['n_seeds']} | {'/'.join(map(str, its)) if its else '-'} | {r['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def _cell(text: str):
    """One CSV cell back to its value: '' -> None, numbers, lists and dicts (written by repr)."""
    if text == "":
        return None
    if text[0] in "[{(":
        return ast.literal_eval(text)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_ladder_csv(path: str | Path) -> list[dict]:
    """The rows of a ladder.csv as :func:`summarise` made them (numbers typed, empty -> None),
    e.g. to draw the ladders of several vocab sizes in one figure."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _cell(v) for k, v in r.items()} for r in csv.DictReader(f)]
