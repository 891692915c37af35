"""Story corpora: TinyStories from the Hugging Face hub, local files, and an embedded default.

Every corpus is a pair of re-iterable :class:`StorySource` objects (train, valid) that yield
stories in batches, so that 2M TinyStories strings never sit in memory at once.

>>> corpus = load_corpus("default", max_stories=100)
>>> next(corpus.train.iter_batches(4))[0][:16]
'Once upon a time'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from hmm_lang.errors import HmmLangError
from hmm_lang.synthetic import generate_stories

log = logging.getLogger(__name__)

EOT = "<|endoftext|>"
HUB_DATASET = "roneneldan/TinyStories"
TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
ALTERNATIVES = (
    "use --data PATH with a local TinyStories .txt (stories separated by <|endoftext|> lines), "
    ".jsonl/.json with a 'text' field, .parquet or a save_to_disk folder, "
    "or --data default for the embedded synthetic corpus"
)


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


def _batched(stories: Iterator[str], batch_size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for story in stories:
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
        return _batched(self._iter(), batch_size)

    def fingerprint(self) -> str:
        return "txt-" + _file_hash(self.path)


class JsonFileSource(StorySource):
    """.jsonl (one object per line) or .json (a list of objects), each with a ``text`` field."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name

    def _records(self) -> Iterator[tuple[int, object]]:
        try:
            if self.path.suffix == ".jsonl":
                with open(self.path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        if line.strip():
                            yield lineno, json.loads(line)
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
        return _batched(self._iter(), batch_size)

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


@dataclass(frozen=True)
class Corpus:
    """A train and a validation stream of stories."""

    train: StorySource
    valid: StorySource

    @property
    def synthetic(self) -> bool:
        return self.train.synthetic

    def describe(self) -> str:
        label = " [SYNTHETIC TinyStories-style text]" if self.synthetic else ""
        return f"train={self.train.name} valid={self.valid.name}{label}"

    def fingerprint(self) -> str:
        h = hashlib.blake2b(
            f"{self.train.fingerprint()}|{self.valid.fingerprint()}".encode(), digest_size=8
        )
        return h.hexdigest()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the Hugging Face endpoint (``HF_ENDPOINT``)?"""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_hub_split(split: str, dataset_name: str = HUB_DATASET):
    """``datasets.load_dataset(dataset_name, split=split)``, failing fast when offline.

    Without a reachable hub, only a local ``datasets`` cache can serve the request; the
    library's own retries (about 30 s) are skipped by switching it to offline mode.
    """
    import datasets

    online = hub_reachable()
    saved = (datasets.config.HF_HUB_OFFLINE, getattr(datasets.config, "HF_DATASETS_OFFLINE", None))
    if not online:
        log.info("Hugging Face hub unreachable; trying the local datasets cache only")
        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        return datasets.load_dataset(dataset_name, split=split)
    except Exception as e:  # the library raises many types (ConnectionError, FileNotFound...)
        where = "the hub could not be reached and it is not cached" if not online else str(e)
        raise HmmLangError(
            f"cannot load {dataset_name} split {split!r} ({where}); {ALTERNATIVES}"
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved


def _arrow_from_disk(path: Path, split: str):
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        for name in (split, "validation" if split == "valid" else split):
            if name in ds:
                return ds[name]
        raise HmmLangError(f"{path}: no {split!r} split (splits: {list(ds)})")
    return ds


def open_source(path: str | os.PathLike, split: str = "train") -> StorySource:
    """A :class:`StorySource` for a local file or ``save_to_disk`` folder, by its format."""
    p = Path(path)
    if not p.exists():
        raise HmmLangError(f"data path {p} does not exist; {ALTERNATIVES}")
    if p.is_dir():
        if not any((p / f).exists() for f in ("dataset_info.json", "dataset_dict.json")):
            raise HmmLangError(f"{p} is a folder but not a datasets save_to_disk folder")
        return ArrowSource(_arrow_from_disk(p, split), p.name, "disk-" + _dir_hash(p))
    if p.stat().st_size == 0:
        raise HmmLangError(f"data file {p} is empty; it must hold at least one story")
    suffix = p.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return TextFileSource(p)
    if suffix in JSON_SUFFIXES:
        return JsonFileSource(p)
    if suffix in PARQUET_SUFFIXES:
        import datasets

        ds = datasets.Dataset.from_parquet(str(p))
        return ArrowSource(ds, p.name, "parquet-" + _file_hash(p))
    raise HmmLangError(
        f"unknown data format {p.suffix!r} for {p}: use .txt, .jsonl, .json, .parquet "
        "or a save_to_disk folder"
    )


def _dir_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(path)}:{_file_hash(f)}".encode())
    return h.hexdigest()


def load_corpus(
    data: str = "default",
    valid: str | None = None,
    max_stories: int | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    synthetic_stories: int = 20_000,
    max_valid_stories: int | None = None,
) -> Corpus:
    """Open a corpus by name or path.

    data: ``"default"`` (embedded synthetic stories), ``"tinystories"`` (the hub dataset's
    train/validation splits) or a path. ``valid`` gives a validation file; otherwise one is
    carved off ``data`` by story (``valid_fraction``, seeded). ``max_stories`` caps the training
    stories (and the validation stories at ``max(1, max_stories * valid_fraction)``);
    ``max_valid_stories`` caps the validation stories explicitly.
    """
    if data == "default":
        n = synthetic_stories if max_stories is None else max_stories
        base: StorySource = SyntheticSource(int(n / (1 - valid_fraction)) + 1, seed)
        train, val = _split(base, valid, valid_fraction, seed)
        max_stories = None
    elif data == "tinystories":
        train = ArrowSource(load_hub_split("train"), "TinyStories[train]", "")
        train._fingerprint = "hub-" + train.dataset._fingerprint
        if valid is None:
            val = ArrowSource(load_hub_split("validation"), "TinyStories[validation]", "")
            val._fingerprint = "hub-" + val.dataset._fingerprint
        else:
            val = open_source(valid, "valid")
    else:
        train, val = _split(open_source(data, "train"), valid, valid_fraction, seed)
    if max_stories is not None:
        if max_stories < 1:
            raise HmmLangError(f"max_stories must be at least 1, got {max_stories}")
        train = LimitSource(train, max_stories)
        val = LimitSource(val, max(1, int(max_stories * valid_fraction)))
    if max_valid_stories is not None:
        val = LimitSource(val, max_valid_stories)
    return Corpus(train=train, valid=val)


def _split(
    base: StorySource, valid: str | None, fraction: float, seed: int
) -> tuple[StorySource, StorySource]:
    if valid is not None:
        return base, open_source(valid, "valid")
    return SplitSource(base, "train", fraction, seed), SplitSource(base, "valid", fraction, seed)
