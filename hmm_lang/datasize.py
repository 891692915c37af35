"""How big a run's data is, found cheaply: file sizes and a count of story separators for
local data, the documented sizes for ``tinystories`` (never the hub). Used by the dry run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hmm_lang import estimate as E
from hmm_lang.corpus import EOT, open_source
from hmm_lang.errors import HmmLangError

COUNT_LIMIT = 1 << 28  # count separators in files up to 256 MB; beyond, in the first 256 MB
TS_BYTES_PER_STORY = E.TINYSTORIES_TRAIN_BYTES / E.TINYSTORIES_TRAIN_STORIES


@dataclass(frozen=True)
class DataSize:
    """Stories and UTF-8 bytes of the train and validation splits a run would read."""

    name: str
    train_stories: int
    train_bytes: int
    valid_stories: int
    valid_bytes: int
    synthetic: bool = False
    how: str = "counted"

    def train_tokens(self, vocab_size: int) -> int:
        return E.n_tokens(self.train_bytes, self.train_stories, vocab_size, self.synthetic)

    def valid_tokens(self, vocab_size: int) -> int:
        return E.n_tokens(self.valid_bytes, self.valid_stories, vocab_size, self.synthetic)


def _count(path: Path, needle: bytes) -> tuple[float, bool]:
    """Occurrences of ``needle`` in ``path`` (extrapolated past :data:`COUNT_LIMIT`), exact?"""
    size, seen, n, tail = path.stat().st_size, 0, 0, b""
    with open(path, "rb") as f:
        while seen < COUNT_LIMIT and (chunk := f.read(1 << 24)):
            buf = tail + chunk
            n, tail, seen = n + buf.count(needle), buf[-(len(needle) - 1) :], seen + len(chunk)
    return (n, True) if seen >= size else (n * size / seen, False)


def _file_size(path: str) -> tuple[int, int, str]:
    """(stories, bytes, how) of a local data file or ``save_to_disk`` folder; the same one-line
    errors as loading it."""
    p = Path(path)
    if p.is_dir():
        if not any((p / f).exists() for f in ("dataset_info.json", "dataset_dict.json")):
            open_source(p)  # raises the loader's one-line error
        from hmm_lang.corpus import _arrow_from_disk

        ds = _arrow_from_disk(p, "train")  # memory-mapped: reads the schema and row count
        return len(ds), int(ds.data.nbytes), "row count and Arrow bytes"
    src = open_source(p)  # validates: exists, not empty, known format; reads no stories
    size = p.stat().st_size
    if p.suffix.lower() == ".txt":
        n, exact = _count(p, EOT.encode())
        n = max(1, round(n))
        return n, max(1, size - n * (len(EOT) + 1)), "counted" if exact else "sampled (estimate)"
    if p.suffix.lower() in (".jsonl", ".json"):
        n, exact = _count(p, b'"text"')
        n = max(1, round(n))
        return n, max(1, size - 12 * n), "counted" if exact else "sampled (estimate)"
    md = src._file.metadata  # parquet: row count and uncompressed bytes from the footer
    nbytes = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    return max(1, md.num_rows), max(1, int(nbytes)), "parquet metadata"


def data_size(
    data: str = "default",
    valid: str | None = None,
    max_stories: int | None = None,
    valid_fraction: float = 0.1,
    synthetic_stories: int = 20_000,
    max_valid_stories: int | None = None,
) -> DataSize:
    """The sizes :func:`hmm_lang.corpus.load_corpus` would give, without reading stories."""
    if max_stories is not None and max_stories < 1:
        raise HmmLangError(f"max_stories must be at least 1, got {max_stories}")
    synthetic = data == "default"
    if synthetic:
        n = synthetic_stories if max_stories is None else max_stories
        total, bps = int(n / (1 - valid_fraction)) + 1, E.SYNTHETIC_BYTES_PER_STORY
        train, vs, vb = (total, total * bps), 0, 0
        name, how, max_stories = "default (SYNTHETIC)", "synthetic stories x measured bytes", None
    elif data == "tinystories":
        train = (E.TINYSTORIES_TRAIN_STORIES, E.TINYSTORIES_TRAIN_BYTES)
        vs = E.TINYSTORIES_VALID_STORIES
        vb = round(vs * TS_BYTES_PER_STORY)
        name, how = "TinyStories (hub, not contacted)", "documented sizes (estimates)"
    else:
        s, b, how = _file_size(data)
        train, vs, vb, name = (s, b), 0, 0, Path(data).name
    if valid is not None:
        vs, vb, _ = _file_size(valid)
    elif data != "tinystories":  # carved off by story
        vs = round(train[0] * valid_fraction)
        vb = round(train[1] * vs / train[0])
        train = (train[0] - vs, train[1] - vb)
    ts, tb = train
    if max_stories is not None:
        cap = max(1, int(max_stories * valid_fraction))
        tb, ts = round(tb * min(ts, max_stories) / ts), min(ts, max_stories)
        vb, vs = round(vb * min(vs, cap) / max(vs, 1)), min(vs, cap)
    if max_valid_stories is not None and vs > max_valid_stories:
        vb, vs = round(vb * max_valid_stories / vs), max_valid_stories
    return DataSize(name, ts, tb, vs, vb, synthetic, how)
