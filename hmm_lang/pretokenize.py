"""Pretokenized splits: a flat uint16 token array plus story offsets, cached per tokenizer.

Each story is encoded without special tokens and followed by the end-of-story token ``</s>``,
so ``tokens[offsets[i]:offsets[i+1]]`` is story ``i`` with its ``</s>``. Encoding uses the
Rust tokenizer's ``encode_batch``, which runs on all cores. The cache lives at
``<custom_tokenizer_V>/pretokenized/<data fingerprint>.npz`` and is written atomically.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hmm_lang.atomic import save_npz
from hmm_lang.corpus import StorySource
from hmm_lang.errors import HmmLangError
from hmm_lang.tokenizer import EOS, resolve_tokenizer_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenStream:
    """A pretokenized split."""

    tokens: np.ndarray  # (N,) uint16, each story followed by </s>
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
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        for a in (self.tokens, self.offsets):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(f"{self.vocab_size}/{self.eos_id}".encode())
        return h.hexdigest()

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


def _encode(tokenizer, source: StorySource, batch_size: int) -> TokenStream:
    eos = tokenizer.token_to_id(EOS)
    chunks: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    story_bytes: list[int] = []
    bar = tqdm(
        desc=f"pretokenize {source.name}", unit="story", total=source.n_stories(), leave=False
    )
    for batch in source.iter_batches(batch_size):
        encs = tokenizer.encode_batch(batch, add_special_tokens=False)
        for text, enc in zip(batch, encs, strict=True):
            chunks.append(np.asarray(enc.ids + [eos], dtype=np.uint16))
            story_bytes.append(len(text.encode("utf-8")))
        lengths.append(np.fromiter((len(e.ids) + 1 for e in encs), dtype=np.int64))
        bar.update(len(batch))
    bar.close()
    if not chunks:
        raise HmmLangError(f"no stories in {source.name}; the split is empty")
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return TokenStream(
        np.concatenate(chunks),
        offsets,
        np.asarray(story_bytes, dtype=np.int64),
        tokenizer.get_vocab_size(),
        eos,
    )


def pretokenize(
    source: StorySource, tokenizer_dir: str | Path, batch_size: int = 2000, force: bool = False
) -> TokenStream:
    """Encode ``source`` with the tokenizer at ``tokenizer_dir``, reusing the cached arrays."""
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
    cache = hdir / "pretokenized" / f"{key.hexdigest()}.npz"
    if cache.exists() and not force:
        try:
            with np.load(cache) as z:
                return TokenStream(
                    z["tokens"],
                    z["offsets"],
                    z["story_bytes"],
                    int(z["vocab_size"]),
                    int(z["eos_id"]),
                )
        except Exception as e:  # truncated zip, bad arrays, ...: rebuild it
            log.warning("cache %s is unreadable (%s); re-encoding", cache, type(e).__name__)
    stream = _encode(tokenizer, source, batch_size)
    save_npz(
        cache,
        tokens=stream.tokens,
        offsets=stream.offsets,
        story_bytes=stream.story_bytes,
        vocab_size=np.int64(stream.vocab_size),
        eos_id=np.int64(stream.eos_id),
    )
    return stream
