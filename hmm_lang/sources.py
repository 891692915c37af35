"""Story sources: re-iterable streams of stories read in batches.

Files (TinyStories .txt, .jsonl/.json, Arrow datasets), the synthetic generator, and the two
wrappers that carve a deterministic validation split off a source or cap its length.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hmm_lang.errors import HmmLangError
from hmm_lang.synthetic import generate_stories

EOT = "<|endoftext|>"


class StorySource:
    """A re-iterable stream of stories. Subclasses implement :meth:`iter_batches`."""

    name: str = "stories"
    synthetic: bool = False

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        raise NotImplementedError

    def iter_stories(self) -> Iterator[str]:
        for batch in self.iter_batches():
            yield from batch

    def fingerprint(self) -> str:
        """A short hash that changes whenever the stories change."""
        raise NotImplementedError

    def n_stories(self) -> int | None:
        """The number of stories when known without reading them all, else None."""
        return None


MAX_STORY_CHARS = 1_000_000  # TinyStories stories are ~1k characters; BPE on a multi-MB
# "story" (a file with no separators) takes gigabytes inside the tokenizer library


def _batched(
    stories: Iterator[str], batch_size: int, name: str = "the data"
) -> Iterator[list[str]]:
    batch: list[str] = []
    for i, story in enumerate(stories):
        if len(story) > MAX_STORY_CHARS:
            raise HmmLangError(
                f"{name}: story {i + 1} has {len(story):,} characters, above the "
                f"{MAX_STORY_CHARS:,} limit; separate stories with a line <|endoftext|> (.txt) "
                "or one object per story (.jsonl)"
            )
        batch.append(story)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


class TextFileSource(StorySource):
    """The official TinyStories .txt format: each story is followed by a line ``<|endoftext|>``."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name

    def _iter(self) -> Iterator[str]:
        lines: list[str] = []
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise HmmLangError(
                        f"{self.path}: line {lineno} is not valid UTF-8 (byte {e.start} of the "
                        "line); re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8"
                    ) from None
                if line.strip() == EOT:
                    story = "".join(lines).strip()
                    if story:
                        yield story
                    lines = []
                else:
                    lines.append(line)
        story = "".join(lines).strip()
        if story:
            yield story

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        return _batched(self._iter(), batch_size, str(self.path))

    def fingerprint(self) -> str:
        return "txt-" + _file_hash(self.path)


class JsonFileSource(StorySource):
    """.jsonl (one object per line) or .json (a list of objects), each with a ``text`` field."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name

    def _records(self) -> Iterator[tuple[int, object]]:
        try:
            if self.path.suffix.lower() == ".jsonl":
                with open(self.path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        try:
                            rec = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise HmmLangError(
                                f"{self.path}: line {lineno} is not valid JSON ({e.msg}); fix "
                                "or remove that line"
                            ) from None
                        yield lineno, rec
            else:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                if isinstance(data, dict) and isinstance(data.get("text"), list):
                    data = [{"text": t} for t in data["text"]]
                if not isinstance(data, list):
                    raise HmmLangError(
                        f"{self.path}: expected a JSON list of objects with a 'text' field"
                    )
                yield from enumerate(data, 1)
        except UnicodeDecodeError:
            raise HmmLangError(f"{self.path}: not valid UTF-8; re-encode it as UTF-8") from None
        except json.JSONDecodeError as e:
            raise HmmLangError(f"{self.path}: invalid JSON ({e.msg} at line {e.lineno})") from None

    def _iter(self) -> Iterator[str]:
        for i, rec in self._records():
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise HmmLangError(f"{self.path}: record {i} has no string 'text' field")
            if rec["text"].strip():
                yield rec["text"].strip()

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        return _batched(self._iter(), batch_size, str(self.path))

    def fingerprint(self) -> str:
        return "json-" + _file_hash(self.path)


class ArrowSource(StorySource):
    """A ``datasets.Dataset`` (from the hub, a parquet file or ``save_to_disk``), read in batches."""

    def __init__(self, dataset, name: str, fingerprint: str):
        if "text" not in dataset.column_names:
            raise HmmLangError(
                f"{name}: no 'text' column (columns: {dataset.column_names}); "
                "rename the story column to 'text'"
            )
        self.dataset = dataset
        self.name = name
        self._fingerprint = fingerprint

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        for start in range(0, len(self.dataset), batch_size):
            texts = self.dataset[start : start + batch_size]["text"]
            batch = [t.strip() for t in texts if t and t.strip()]
            if batch:
                yield batch

    def fingerprint(self) -> str:
        return self._fingerprint

    def n_stories(self) -> int:
        return len(self.dataset)


class ParquetSource(StorySource):
    """A local .parquet file with a ``text`` column, streamed in record batches by pyarrow: no
    Arrow cache is written (a read-only HOME works) and memory stays one batch."""

    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.path, self.name = path, path.name
        try:
            self._file = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises its own types for a bad file
            raise HmmLangError(
                f"{path}: not a readable parquet file ({type(e).__name__})"
            ) from None
        names = self._file.schema_arrow.names
        if "text" not in names:
            raise HmmLangError(
                f"{path.name}: no 'text' column (columns: {names}); rename the story column to 'text'"
            )

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        def stories():
            for rb in self._file.iter_batches(batch_size=batch_size, columns=["text"]):
                for t in rb.column(0).to_pylist():
                    if t and t.strip():
                        yield t.strip()

        return _batched(stories(), batch_size, str(self.path))

    def fingerprint(self) -> str:
        return "parquet-" + _file_hash(self.path)

    def n_stories(self) -> int:
        return self._file.metadata.num_rows


class ListSource(StorySource):
    """Stories held in memory (a list of strings), e.g. for ``train_tokenizers([...])``."""

    def __init__(self, stories: list[str], name: str = "stories"):
        bad = next((s for s in stories if not isinstance(s, str)), None)
        if bad is not None:
            raise HmmLangError(f"every story must be a string, got a {type(bad).__name__}")
        self.stories = [s.strip() for s in stories if s.strip()]
        self.name = name

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        return _batched(iter(self.stories), batch_size, self.name)

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        for s in self.stories:
            h.update(s.encode("utf-8") + b"\0")
        return "list-" + h.hexdigest()

    def n_stories(self) -> int:
        return len(self.stories)


class SyntheticSource(StorySource):
    """The embedded TinyStories-style generator (synthetic text, see :mod:`hmm_lang.synthetic`)."""

    synthetic = True

    def __init__(self, n_stories: int, seed: int = 0):
        self.n = n_stories
        self.seed = seed
        self.name = f"synthetic(n={n_stories}, seed={seed})"

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        return _batched(generate_stories(self.n, self.seed), batch_size)

    def fingerprint(self) -> str:
        return f"synthetic-{self.n}-{self.seed}"

    def n_stories(self) -> int:
        return self.n


def split_mask(indices: np.ndarray, seed: int, fraction: float) -> np.ndarray:
    """True where story ``indices`` fall in the validation part: a seeded splitmix64 hash of the
    story index, so the split is deterministic, independent of batch size, and streamable."""
    with np.errstate(over="ignore"):
        z = indices.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


class SplitSource(StorySource):
    """One side of a deterministic, seeded split of ``base`` by story."""

    def __init__(self, base: StorySource, part: str, fraction: float, seed: int):
        if part not in ("train", "valid"):
            raise ValueError(part)
        if not 0.0 < fraction < 1.0:
            raise HmmLangError(f"valid fraction must be in (0, 1), got {fraction}")
        self.base, self.part, self.fraction, self.seed = base, part, fraction, seed
        self.name = f"{base.name}[{part}]"
        self.synthetic = base.synthetic

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        offset = 0
        stories = []
        for batch in self.base.iter_batches(batch_size):
            mask = split_mask(np.arange(offset, offset + len(batch)), self.seed, self.fraction)
            offset += len(batch)
            want_valid = self.part == "valid"
            stories.extend(s for s, m in zip(batch, mask, strict=True) if m == want_valid)
            while len(stories) >= batch_size:
                yield stories[:batch_size]
                stories = stories[batch_size:]
        if stories:
            yield stories

    def fingerprint(self) -> str:
        return f"{self.base.fingerprint()}-{self.part}{self.fraction}s{self.seed}"


class LimitSource(StorySource):
    """The first ``max_stories`` stories of ``base``."""

    def __init__(self, base: StorySource, max_stories: int):
        self.base, self.max_stories = base, max_stories
        self.name = f"{base.name}[:{max_stories}]"
        self.synthetic = base.synthetic

    def iter_batches(self, batch_size: int = 1000) -> Iterator[list[str]]:
        left = self.max_stories
        for batch in self.base.iter_batches(batch_size):
            if left <= 0:
                return
            yield batch[:left]
            left -= len(batch)

    def fingerprint(self) -> str:
        return f"{self.base.fingerprint()}-max{self.max_stories}"

    def n_stories(self) -> int | None:
        n = self.base.n_stories()
        return self.max_stories if n is None else min(n, self.max_stories)
