"""Pack variable-length sequences into lanes, so batched HMM passes waste almost no work.

A batch is N lanes of T steps. Each lane holds several whole sequences back to back; the
forward pass restarts from the initial distribution where ``start`` is True, so sequences stay
independent while every step of the Python loop serves N tokens. Only lane tails are padding.
Lanes are ordered longest first, so the lanes still running at any step are a prefix: the dense
passes compute only that prefix, and a few long sequences in lanes of their own (``ragged``) do
not make every lane as long as they are.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hmm_lang.errors import HmmLangError


@dataclass
class LaneBatch:
    tokens: torch.Tensor  # (N, T) int64; 0 at padding
    start: torch.Tensor  # (N, T) bool; True where a sequence begins
    valid: torch.Tensor  # (N, T) bool; False at padding
    story: torch.Tensor | None = None  # (N, T) int64 index of the packed sequence; -1 at padding

    @property
    def n_tokens(self) -> int:
        return int(self.valid.sum())

    @property
    def n_sequences(self) -> int:
        return int(self.start.sum())

    def to(self, device) -> LaneBatch:
        story = None if self.story is None else self.story.to(device)
        return LaneBatch(
            self.tokens.to(device), self.start.to(device), self.valid.to(device), story
        )


def story_totals(per_step: torch.Tensor, batch: LaneBatch, out: np.ndarray) -> None:
    """Add a time-major (T, N) per-token quantity (e.g. log c_t) into ``out[story]``."""
    if batch.story is None:
        raise HmmLangError("this batch was packed without story indices; use pack_lanes")
    story = batch.story.t().reshape(-1).to(per_step.device)
    keep = story >= 0
    sums = torch.zeros(len(out), dtype=torch.float64, device=per_step.device)
    sums.index_add_(0, story[keep], per_step.reshape(-1)[keep].double())
    out += sums.cpu().numpy()


def check_sequences(sequences: Sequence[np.ndarray], vocab_size: int) -> None:
    """One-line errors for empty input, empty sequences and out-of-range token ids."""
    if len(sequences) == 0:
        raise HmmLangError("no sequences to fit or score; the token stream is empty")
    for i, s in enumerate(sequences):
        if len(s) == 0:
            raise HmmLangError(f"sequence {i} is empty; drop empty stories before fitting")
    top = max(int(np.max(s)) for s in sequences)
    low = min(int(np.min(s)) for s in sequences)
    if top >= vocab_size or low < 0:
        raise HmmLangError(
            f"token id {top if top >= vocab_size else low} is outside the model's vocabulary "
            f"[0, {vocab_size}); use the tokenizer the model was built for"
        )


class PackedBatches(Sequence):
    """The batches of :func:`pack_lanes`, a sequence of :class:`LaneBatch`.

    Only the plan (which sequences go in which lane) is kept for a large corpus; each batch's
    tensors (18 bytes per token) are built from the sequences when it is read, so a pass over
    a memory-mapped stream holds one batch at a time. Small corpora (``cache_tokens`` or
    fewer tokens) keep their built batches, since EM reads them every iteration."""

    def __init__(self, sequences: Sequence[np.ndarray], plan: list, cache_tokens: int) -> None:
        self.sequences, self.plan = sequences, plan
        total = sum(len(sequences[i]) for b in plan for lane in b for i in lane)
        self._cache = [_build(sequences, b) for b in plan] if total <= cache_tokens else None

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._cache is not None:
            return self._cache[i]
        return _build(self.sequences, self.plan[i])


def pack_lanes(
    sequences: Sequence[np.ndarray],
    batch_tokens: int = 1 << 18,
    lane_len: int = 512,
    cache_tokens: int = 1 << 23,
    ragged: bool = False,
) -> PackedBatches:
    """Pack ``sequences`` into batches of about ``batch_tokens`` tokens in lanes of ``lane_len``
    steps, longest first, each into the emptiest lane. ``lane_len`` is raised to the longest
    sequence unless ``ragged``: then a sequence longer than ``lane_len`` has a lane of its own
    and the batch holds at most ``batch_tokens`` / longest lanes (its (T, N) rectangle stays
    within ``batch_tokens``). Batches are built when read, unless the corpus has at most
    ``cache_tokens`` tokens."""
    if len(sequences) == 0:
        raise HmmLangError("no sequences to pack; the token stream is empty")
    longest = max(len(s) for s in sequences)
    if not ragged:
        lane_len = max(lane_len, longest)
    # no more lanes than the data fills (with 10% slack for packing): on small data, surplus
    # lanes would each hold one short sequence and the batch would be mostly padding
    total = sum(len(s) for s in sequences)
    fill = -(-total * 11 // (10 * lane_len)) + 1
    n_lanes = max(1, min(batch_tokens // max(lane_len, longest), fill))
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    batches: list[list[list[int]]] = []
    heap: list[tuple[int, int]] = []  # (used length, lane index) of the current batch
    lanes: list[list[int]] = []
    for i in order:
        n = len(sequences[i])
        if len(lanes) < n_lanes:
            lanes.append([i])
            heapq.heappush(heap, (n, len(lanes) - 1))
            continue
        used, lane = heap[0]
        if used + n > lane_len:
            batches.append(lanes)
            lanes, heap = [[i]], [(n, 0)]
            continue
        lanes[lane].append(i)
        heapq.heapreplace(heap, (used + n, lane))
    batches.append(lanes)
    return PackedBatches(sequences, batches, cache_tokens)


def _build(sequences: Sequence[np.ndarray], lanes: list[list[int]]) -> LaneBatch:
    used = [sum(len(sequences[i]) for i in lane) for lane in lanes]
    # longest lane first: at each step the lanes with tokens left are a prefix of the batch
    lanes = [lanes[j] for j in sorted(range(len(lanes)), key=lambda j: -used[j])]
    t = max(used)
    tokens = np.zeros((len(lanes), t), dtype=np.int64)
    start = np.zeros((len(lanes), t), dtype=bool)
    valid = np.zeros((len(lanes), t), dtype=bool)
    story = np.full((len(lanes), t), -1, dtype=np.int64)
    for row, lane in enumerate(lanes):
        pos = 0
        for i in lane:
            s = sequences[i]
            tokens[row, pos : pos + len(s)] = s
            start[row, pos] = True
            valid[row, pos : pos + len(s)] = True
            story[row, pos : pos + len(s)] = i
            pos += len(s)
    return LaneBatch(
        torch.from_numpy(tokens),
        torch.from_numpy(start),
        torch.from_numpy(valid),
        torch.from_numpy(story),
    )
