"""Pretokenized splits: a flat uint16 token array plus story offsets, cached per tokenizer.

Each story is encoded without special tokens and followed by the end-of-story token ``</s>``,
so ``tokens[offsets[i]:offsets[i+1]]`` is story ``i`` with its ``</s>``. Encoding uses the
Rust tokenizer's ``encode_batch``, which runs on all cores. The cache is a folder
``<custom_tokenizer_V>/pretokenized/<data fingerprint>/`` (``tokens.u16``, raw little-endian
uint16; ``offsets.npy``; ``story_bytes.npy``; ``meta.json``) built under a temporary name and
renamed into place. Tokens are appended to the file batch by batch while encoding and
memory-mapped when read, so neither step holds the corpus in RAM (2 bytes per token on disk;
the full TinyStories is about 1 GB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hmm_lang.atomic import atomic_dir
from hmm_lang.corpus import StorySource
from hmm_lang.errors import HmmLangError
from hmm_lang.tokenizer import EOS, resolve_tokenizer_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenStream:
    """A pretokenized split."""

    tokens: np.ndarray  # (N,) uint16 (a read-only np.memmap when cached), stories + </s>
    offsets: np.ndarray  # (S+1,) int64 story boundaries into tokens
    story_bytes: np.ndarray  # (S,) int64 UTF-8 bytes of each story's text
    vocab_size: int
    eos_id: int

    @property
    def n_stories(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_bytes(self) -> int:
        """UTF-8 bytes of the stories, counting each end-of-story token as one byte (the
        separator), the denominator of bits per byte."""
        return int(self.story_bytes.sum()) + self.n_stories

    def story(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def stories(self) -> list[np.ndarray]:
        return [self.story(i) for i in range(self.n_stories)]

    def digest(self) -> str:
        """A content hash of the tokens and story boundaries (what a model trained on)."""
        h = hashlib.blake2b(digest_size=12)
        step = 1 << 24  # hash in pieces: a memory-mapped stream is never copied whole
        for a in (self.tokens, self.offsets):
            for i in range(0, len(a), step):
                h.update(np.ascontiguousarray(a[i : i + step]).tobytes())
        h.update(f"{self.vocab_size}/{self.eos_id}".encode())
        return h.hexdigest()

    def select(self, stories: np.ndarray) -> TokenStream:
        """The stories at the indices ``stories`` (in that order), copied into a new stream."""
        stories = np.asarray(stories, dtype=np.int64)
        starts = self.offsets[stories]
        lengths = self.offsets[stories + 1] - starts
        offsets = np.zeros(len(stories) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # runs of consecutive stories are copied slice by slice: no per-token int64 index, so
        # carving 5% of a memory-mapped corpus costs one copy of its uint16 tokens
        cut = np.flatnonzero(np.diff(stories) != 1) + 1
        runs = [r for r in np.split(stories, cut) if len(r)]
        pieces = [self.tokens[self.offsets[r[0]] : self.offsets[r[-1] + 1]] for r in runs]
        tokens = np.concatenate(pieces) if pieces else np.asarray(self.tokens[:0])
        return TokenStream(tokens, offsets, self.story_bytes[stories], self.vocab_size, self.eos_id)

    def head(self, n_stories: int) -> TokenStream:
        """The first ``n_stories`` stories."""
        n = min(n_stories, self.n_stories)
        return TokenStream(
            self.tokens[: self.offsets[n]],
            self.offsets[: n + 1],
            self.story_bytes[:n],
            self.vocab_size,
            self.eos_id,
        )


TOKENS, META = "tokens.u16", "meta.json"


def _encode(tokenizer, source: StorySource, batch_size: int, folder: Path) -> None:
    """Encode ``source`` into ``folder``, appending each batch's tokens to ``tokens.u16``."""
    eos = tokenizer.token_to_id(EOS)
    lengths: list[np.ndarray] = []
    story_bytes: list[np.ndarray] = []
    bar = tqdm(
        desc=f"pretokenize {source.name}", unit="story", total=source.n_stories(), leave=False
    )
    with open(folder / TOKENS, "wb") as f:
        for batch in source.iter_batches(batch_size):
            encs = tokenizer.encode_batch(batch, add_special_tokens=False)
            lens = np.fromiter((len(e.ids) + 1 for e in encs), dtype=np.int64, count=len(encs))
            flat = np.empty(int(lens.sum()), dtype="<u2")
            ends = np.cumsum(lens)
            for enc, end, n in zip(encs, ends, lens, strict=True):
                flat[end - n : end - 1] = enc.ids
            flat[ends - 1] = eos
            f.write(flat.tobytes())
            lengths.append(lens)
            story_bytes.append(np.fromiter((len(t.encode("utf-8")) for t in batch), np.int64))
            bar.update(len(batch))
    bar.close()
    if not lengths:
        raise HmmLangError(f"no stories in {source.name}; the split is empty")
    lens = np.concatenate(lengths)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    np.save(folder / "offsets.npy", offsets)
    np.save(folder / "story_bytes.npy", np.concatenate(story_bytes))
    meta = {"n_tokens": int(offsets[-1]), "vocab_size": tokenizer.get_vocab_size(), "eos_id": eos}
    (folder / META).write_text(json.dumps(meta))


def save_stream(stream: TokenStream, folder: str | Path) -> Path:
    """Write ``stream`` as a stream folder (the cache's layout), atomically; a stream folder is
    also a data source: ``data.data`` may name one (see :func:`hmm_lang.runs.config_streams`)."""
    folder = Path(folder)
    if stream.vocab_size > 1 << 16:
        raise HmmLangError(f"vocab size {stream.vocab_size} does not fit uint16 token files")
    with atomic_dir(folder) as tmp:
        (tmp / TOKENS).write_bytes(np.ascontiguousarray(stream.tokens, dtype="<u2").tobytes())
        np.save(tmp / "offsets.npy", np.asarray(stream.offsets, dtype=np.int64))
        np.save(tmp / "story_bytes.npy", np.asarray(stream.story_bytes, dtype=np.int64))
        meta = {"n_tokens": stream.n_tokens, "vocab_size": stream.vocab_size}
        (tmp / META).write_text(json.dumps(meta | {"eos_id": stream.eos_id}))
    return folder


def is_stream_folder(path: str | Path | None) -> bool:
    """Whether ``path`` is a folder written by :func:`save_stream` (or a pretokenized cache)."""
    return path is not None and (Path(path) / META).is_file() and (Path(path) / TOKENS).is_file()


def split_stream(
    stream: TokenStream, fraction: float, seed: int
) -> tuple[TokenStream, TokenStream]:
    """(train, valid) by story, with the same seeded hash as text corpora (``split_mask``)."""
    from hmm_lang.sources import split_mask

    if not 0.0 < fraction < 1.0:
        raise HmmLangError(f"valid fraction must be in (0, 1), got {fraction}")
    mask = split_mask(np.arange(stream.n_stories), seed, fraction)
    return stream.select(np.flatnonzero(~mask)), stream.select(np.flatnonzero(mask))


def load_stream(folder: str | Path) -> TokenStream:
    """The cached stream in ``folder``, its tokens memory-mapped read-only."""
    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    offsets = np.load(folder / "offsets.npy")
    story_bytes = np.load(folder / "story_bytes.npy")
    n = int(meta["n_tokens"])
    size = (folder / TOKENS).stat().st_size
    if size != 2 * n or offsets[-1] != n or len(story_bytes) != len(offsets) - 1:
        raise ValueError(f"{TOKENS} holds {size} bytes for {n} tokens")
    tokens = np.memmap(folder / TOKENS, dtype="<u2", mode="r", shape=(n,))
    vocab = int(meta["vocab_size"])
    # sizes alone miss overwritten contents: ids past the vocabulary or offsets out of order
    # would score silently wrong (a pass over 2 bytes per token, ~0.1 s per 50M tokens)
    chunk = 1 << 24
    top = max((int(tokens[a : a + chunk].max()) for a in range(0, n, chunk)), default=-1)
    if top >= vocab or offsets[0] != 0 or (np.diff(offsets) < 0).any():
        raise ValueError(
            f"{TOKENS} holds token id {top} of a vocabulary of {vocab}, or bad offsets"
        )
    return TokenStream(tokens, offsets, story_bytes, vocab, int(meta["eos_id"]))


def open_stream(folder: str | Path) -> TokenStream:
    """:func:`load_stream` for a folder the user gave: damage is a one-line error."""
    try:
        return load_stream(folder)
    except (OSError, ValueError, KeyError) as e:
        raise HmmLangError(
            f"token-stream folder {folder} is unreadable or damaged ({type(e).__name__}: "
            f"{str(e)[:100]}); write it again"
        ) from None


def pretokenize(
    source: StorySource, tokenizer_dir: str | Path, batch_size: int = 2000, force: bool = False
) -> TokenStream:
    """Encode ``source`` with the tokenizer at ``tokenizer_dir``, reusing the cached stream
    (memory-mapped; see the module docstring)."""
    from tokenizers import Tokenizer

    hdir = resolve_tokenizer_dir(tokenizer_dir)
    tok_json = hdir / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(tok_json))
    except Exception as e:  # the tokenizers library raises its own exception types
        raise HmmLangError(
            f"cannot read {tok_json} ({type(e).__name__}: {str(e)[:80]}); the file is corrupt, "
            "retrain it with `hmm-lang tokenizers --force`"
        ) from None
    # Cache beside the tokenizer, keyed by the data and by the tokenizer file's content.
    key = hashlib.blake2b(source.fingerprint().encode() + tok_json.read_bytes(), digest_size=10)
    cache = hdir / "pretokenized" / key.hexdigest()
    if cache.is_dir() and not force:
        try:
            return load_stream(cache)
        except Exception as e:  # missing or truncated files, bad json, ...: rebuild it
            log.warning("cache %s is unreadable (%s); re-encoding", cache, type(e).__name__)
            shutil.rmtree(cache, ignore_errors=True)
    # content-addressed: a writer that finishes second keeps the first one's folder (unless
    # ``force``: then ours replaces it)
    with atomic_dir(cache, keep_existing=not force) as tmp:
        _encode(tokenizer, source, batch_size, tmp)
    return load_stream(cache)
