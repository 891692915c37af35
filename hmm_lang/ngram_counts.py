"""N-gram counting in bounded memory: sorted runs on disk, merged block by block.

The in-memory path (:meth:`hmm_lang.ngram.KneserNeyModel.fit`) packs every n-gram of the corpus
into one int64 array and sorts a copy with ``np.unique``: 16 bytes per token per order, 7.5 GB
for order 5 on the full TinyStories. Here the stream is cut at story boundaries into chunks of
about ``chunk_tokens`` tokens; each chunk's keys are counted (``np.unique``) and written as a
sorted run; the runs are merged with a vectorised k-way merge that reads ``block`` keys of each
run at a time. Outputs are raw little-endian files in a work folder, memory-mapped read-only,
so the model's arrays live in the page cache rather than in the process's own memory.

Counts are integers and every group of equal keys is reduced in one ``np.bincount`` call in
key order, so the resulting model is bit for bit the in-memory one (``tests/test_ngram.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

_ids = itertools.count()


class Spill:
    """Raw arrays appended piece by piece to a file in ``folder``, then memory-mapped."""

    def __init__(self, folder: Path, name: str, dtype) -> None:
        self.path = folder / f"{name}.{next(_ids)}.bin"
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.n = 0
        self._f = open(self.path, "wb")

    def append(self, a: np.ndarray) -> None:
        self._f.write(memoryview(np.ascontiguousarray(a, dtype=self.dtype)))
        self.n += len(a)

    def close(self) -> np.ndarray:
        """The written array, memory-mapped read-only (a plain empty array when empty). The file
        is unlinked at once: its disk space lives as long as the mapping (POSIX), so runs are
        freed as soon as they are merged, and a killed process leaves nothing behind."""
        self._f.close()
        try:
            if self.n == 0:
                return np.zeros(0, dtype=self.dtype)
            return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n,))
        finally:
            self.path.unlink(missing_ok=True)


def stream_keys(
    tokens: np.ndarray, offsets: np.ndarray, order: int, bos_id: int, bits: int
) -> np.ndarray:
    """(N,) int64 key of the order-gram ending at every token of the stories whose flat tokens
    are ``tokens`` and whose boundaries are ``offsets`` (starting at 0), each story padded on
    the left with ``bos_id``; equal to :func:`hmm_lang.ngram.ngram_keys` of the stories."""
    t = np.asarray(tokens, dtype=np.int64)
    lengths = np.diff(offsets)
    pos = np.arange(len(t)) - np.repeat(offsets[:-1], lengths)  # position within its story
    key = t.copy()
    for s in range(1, order):  # the token s places back, or <s> before the story's start
        prev = np.full(len(t), bos_id, dtype=np.int64)
        prev[s:] = t[:-s]
        prev[pos < s] = bos_id
        key |= prev << (bits * s)
    return key


def chunk_keys(
    stream, order: int, bos_id: int, bits: int, chunk_tokens: int
) -> Iterator[np.ndarray]:
    """:func:`stream_keys` of a ``TokenStream``, one chunk of whole stories at a time."""
    o = stream.offsets
    for a, b in story_chunks(o, chunk_tokens):
        yield stream_keys(stream.tokens[o[a] : o[b]], o[a : b + 1] - o[a], order, bos_id, bits)


def count_runs(blocks: Iterable[np.ndarray], folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """One sorted run (unique keys, counts) on disk per block of keys."""
    runs = []
    for keys in blocks:
        if len(keys) == 0:
            continue
        u, c = np.unique(keys, return_counts=True)
        k_out, c_out = Spill(folder, "run_keys", np.int64), Spill(folder, "run_counts", np.int64)
        k_out.append(u)
        c_out.append(c)
        runs.append((k_out.close(), c_out.close()))
    return runs


def merge_runs(
    runs: list[tuple[np.ndarray, np.ndarray]], folder: Path, block: int = 1 << 18
) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted runs into one sorted array of unique keys with summed counts.

    Each round reads up to ``block`` keys of every unfinished run and emits every key up to the
    smallest last key read among runs that have more to give: no key beyond that bound can
    appear in what is left of any run, so each emitted key's count is complete."""
    keys_out, counts_out = Spill(folder, "keys", np.int64), Spill(folder, "counts", np.int64)
    pos = [0] * len(runs)
    while True:
        live = [i for i, (k, _) in enumerate(runs) if pos[i] < len(k)]
        if not live:
            break
        bufs = {i: runs[i][0][pos[i] : pos[i] + block] for i in live}
        limited = [bufs[i][-1] for i in live if pos[i] + len(bufs[i]) < len(runs[i][0])]
        bound = min(limited) if limited else None
        parts_k, parts_c = [], []
        for i in live:
            take = len(bufs[i]) if bound is None else int(np.searchsorted(bufs[i], bound, "right"))
            parts_k.append(np.asarray(bufs[i][:take]))
            parts_c.append(np.asarray(runs[i][1][pos[i] : pos[i] + take]))
            pos[i] += take
        k = np.concatenate(parts_k)
        u, inv = np.unique(k, return_inverse=True)
        keys_out.append(u)
        counts_out.append(np.bincount(inv, weights=np.concatenate(parts_c)).astype(np.int64))
    return keys_out.close(), counts_out.close()


FAN_IN = 64  # runs merged at once: memory ~ FAN_IN x block x 16 bytes, 2 mappings per run


def count_sorted(
    blocks: Iterable[np.ndarray], folder: Path, block: int = 1 << 18, fan_in: int = FAN_IN
) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys and their counts over all ``blocks`` (an external sort-merge, in passes of
    at most ``fan_in`` runs)."""
    runs = count_runs(blocks, folder)
    if not runs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    while len(runs) > 1:
        runs = [
            merge_runs(runs[i : i + fan_in], folder, block) for i in range(0, len(runs), fan_in)
        ]
    return runs[0]


def story_chunks(offsets: np.ndarray, chunk_tokens: int) -> Iterator[tuple[int, int]]:
    """Story ranges ``[a, b)`` of about ``chunk_tokens`` tokens (at least one story each)."""
    n = len(offsets) - 1
    a = 0
    while a < n:
        b = int(np.searchsorted(offsets, offsets[a] + chunk_tokens, "right")) - 1
        b = min(max(b, a + 1), n)
        yield a, b
        a = b


def sorted_groups(
    keys: np.ndarray, shift: int, block: int = 1 << 22
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Walk sorted ``keys`` in pieces that never split a group of equal ``keys >> shift``:
    yields (the piece's slice, its unique groups, the inverse index)."""
    a, n = 0, len(keys)
    while a < n:
        b = min(a + block, n)
        groups = np.asarray(keys[a:b]) >> shift
        if b < n:  # hold back the last group: it may continue in the next piece
            cut = int(np.searchsorted(groups, groups[-1], "left"))
            if cut == 0:  # one group fills the piece: extend the piece to its end
                while b < n and (int(keys[b]) >> shift) == int(groups[-1]):
                    b = min(b + block, n)
                groups = np.asarray(keys[a:b]) >> shift
                cut = int(np.searchsorted(groups, groups[0], "right"))
            b, groups = a + cut, groups[:cut]
        u, inv = np.unique(groups, return_inverse=True)
        yield slice(a, b), u, inv
        a = b
