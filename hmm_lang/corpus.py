"""Story corpora: TinyStories from the Hugging Face hub, local files, and an embedded default.

Every corpus is a pair of re-iterable :class:`StorySource` objects (train, valid) that yield
stories in batches, so that 2M TinyStories strings never sit in memory at once.

>>> corpus = load_corpus("default", max_stories=100)
>>> next(corpus.train.iter_batches(4))[0][:16]
'Once upon a time'
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from hmm_lang.errors import HmmLangError
from hmm_lang.sources import (
    EOT,
    ArrowSource,
    JsonFileSource,
    LimitSource,
    ListSource,
    ParquetSource,
    SplitSource,
    StorySource,
    SyntheticSource,
    TextFileSource,
    _file_hash,
    split_mask,
)

log = logging.getLogger(__name__)

HUB_DATASET = "roneneldan/TinyStories"
TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
ALTERNATIVES = (
    "use --data PATH with a local TinyStories .txt (stories separated by <|endoftext|> lines), "
    ".jsonl/.json with a 'text' field, .parquet or a save_to_disk folder, "
    "or --data default for the embedded synthetic corpus"
)
__all__ = ["EOT", "Corpus", "StorySource", "as_source", "load_corpus", "open_source", "split_mask"]


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

    def split_fingerprint(self) -> str:
        """What decides which stories are training and which validation (the data, the split
        seed and fraction), ignoring caps on the number of stories: two corpora with the same
        split fingerprint never put one story on different sides."""

        def uncapped(src: StorySource) -> str:
            while isinstance(src, LimitSource):
                src = src.base
            return src.fingerprint()

        h = hashlib.blake2b(
            f"{uncapped(self.train)}|{uncapped(self.valid)}".encode(), digest_size=8
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


def _hub_source(split: str) -> ArrowSource:
    ds = load_hub_split(split)
    return ArrowSource(ds, f"TinyStories[{split}]", "hub-" + ds._fingerprint)


def _arrow_from_disk(path: Path, split: str):
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        for name in (split, "validation" if split == "valid" else split):
            if name in ds:
                return ds[name]
        raise HmmLangError(f"{path}: no {split!r} split (splits: {list(ds)})")
    return ds


def as_source(data) -> StorySource:
    """A :class:`StorySource` from a source, a path (every story of the file), or a list of
    strings."""
    if isinstance(data, StorySource):
        return data
    if isinstance(data, (list, tuple)):
        return ListSource(list(data))
    if isinstance(data, (str, os.PathLike)):
        return open_source(data)
    raise HmmLangError(
        f"cannot read stories from a {type(data).__name__}; give a path, a list of strings or a "
        "StorySource (e.g. load_corpus(...).train)"
    )


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
        return ParquetSource(p)
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
        train = _hub_source("train")
        if valid is None:
            val = _hub_source("validation")
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
