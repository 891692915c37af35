"""Token statistics: counts, rank-frequency, a fitted Zipf exponent, bytes per token."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hmm_lang.pretokenize import TokenStream
from hmm_lang.tokenizer import SPECIAL_TOKENS


@dataclass(frozen=True)
class TokenStats:
    """Frequency statistics of one tokenizer on one split (special tokens excluded)."""

    vocab_size: int
    counts: np.ndarray  # (V,) int64 occurrences of each token id; special tokens are 0
    order: np.ndarray  # (V,) token ids sorted by decreasing count (rank r -> order[r-1])
    pieces: list[str]  # (V,) the text of each token id
    n_tokens: int  # tokens in the stories, special tokens excluded
    n_bytes: int  # UTF-8 bytes of the stories
    zipf_exponent: float

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / self.n_tokens

    @property
    def sorted_counts(self) -> np.ndarray:
        return self.counts[self.order]


def token_counts(
    stream: TokenStream, vocab_size: int | None = None, special_ids: list[int] | tuple = ()
) -> np.ndarray:
    """(V,) counts of each token id in ``stream`` (V: ``vocab_size``, default the stream's),
    with the ``special_ids`` set to zero. The one token counter of the package."""
    v = stream.vocab_size if vocab_size is None else vocab_size
    counts = np.zeros(v, dtype=np.int64)
    step = 1 << 24  # a memory-mapped stream is counted a piece at a time, never copied whole
    for a in range(0, stream.n_tokens, step):
        counts += np.bincount(stream.tokens[a : a + step], minlength=v)[:v]
    counts[list(special_ids)] = 0
    return counts


def zipf_exponent(
    sorted_counts: np.ndarray, min_rank: int = 1, max_rank: int | None = None
) -> float:
    """Least-squares slope s of log f = c - s log r over ranks with nonzero counts."""
    f = np.asarray(sorted_counts, dtype=np.float64)
    f = f[f > 0][min_rank - 1 : max_rank]
    if len(f) < 2:
        return float("nan")
    r = np.arange(min_rank, min_rank + len(f), dtype=np.float64)
    slope = np.polyfit(np.log(r), np.log(f), 1)[0]
    return float(-slope)


def compute_token_stats(stream: TokenStream, tokenizer) -> TokenStats:
    """Statistics of ``stream`` under ``tokenizer`` (a ``PreTrainedTokenizerFast``)."""
    special_ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    counts = token_counts(stream, special_ids=special_ids)
    order = np.argsort(-counts, kind="stable")
    pieces = [tokenizer.decode([i]) for i in range(stream.vocab_size)]
    return TokenStats(
        vocab_size=stream.vocab_size,
        counts=counts,
        order=order,
        pieces=pieces,
        n_tokens=int(counts.sum()),
        n_bytes=int(stream.story_bytes.sum()),
        zipf_exponent=zipf_exponent(counts[order]),
    )


def stats_table(stats: dict[int, TokenStats]) -> list[dict]:
    """One row per tokenizer: vocab size, tokens, bytes, bytes per token, Zipf exponent."""
    return [
        {
            "vocab_size": v,
            "n_tokens": s.n_tokens,
            "n_bytes": s.n_bytes,
            "bytes_per_token": round(s.bytes_per_token, 4),
            "zipf_exponent": round(s.zipf_exponent, 4),
            "tokens_used": int((s.counts > 0).sum()),
        }
        for v, s in sorted(stats.items())
    ]


def collect_token_stats(
    source, tokenizers_dir, vocab_sizes, force: bool = False
) -> dict[int, TokenStats]:
    """Pretokenize ``source`` with each ``HF_custom_tokenizer_{V}`` and compute its statistics."""
    from hmm_lang.pretokenize import pretokenize
    from hmm_lang.tokenizer import hf_dir, load_tokenizer

    out = {}
    for v in vocab_sizes:
        path = hf_dir(tokenizers_dir, v)
        stream = pretokenize(source, path, force=force)
        out[v] = compute_token_stats(stream, load_tokenizer(path))
    return out


def save_token_stats(stats: dict[int, TokenStats], out_dir, fig, top_n: int = 200) -> list[Path]:
    """Write ``rank_frequency.html`` (``fig``: the figure of these stats, e.g.
    :func:`hmm_lang.plots.token_stats.rank_frequency_figure`), ``token_stats.csv`` and
    ``top_tokens_{V}.csv``."""
    from hmm_lang.atomic import atomic_path

    out_dir = Path(out_dir)
    written = [out_dir / "token_stats.csv", out_dir / "rank_frequency.html"]
    write_csv(written[0], stats_table(stats))
    with atomic_path(written[1]) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True)
    for v, s in stats.items():
        rows = [
            {"rank": r + 1, "token_id": int(i), "token": s.pieces[i], "count": int(s.counts[i])}
            for r, i in enumerate(s.order[:top_n])
        ]
        written.append(out_dir / f"top_tokens_{v}.csv")
        write_csv(written[-1], rows)
    return written


def write_csv(path, rows: list[dict]) -> None:
    """Rows of dicts to a CSV file, atomically; columns are the union of the rows' keys (in
    order of first appearance), empty where a row lacks one."""
    from hmm_lang.atomic import atomic_path

    names = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names, restval="")
        writer.writeheader()
        writer.writerows(rows)
