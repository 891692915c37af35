"""Token batches for training and per-story evaluation of the transformer.

Training reads random windows of ``n_ctx + 1`` tokens from the concatenated training stories,
each story written as ``<s> story </s>``. Evaluation scores every story (dev or validation) on its own,
from ``<s>``, like the HMM and n-gram models, so bits per byte compare across families; stories
longer than the context are scored with a sliding window (:func:`story_windows`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from hmm_lang.errors import HmmLangError
from hmm_lang.pretokenize import TokenStream
from hmm_lang.scoring import Score, score

log = logging.getLogger(__name__)


def with_bos(stream: TokenStream, bos_id: int) -> np.ndarray:
    """(N + S,) the stream with ``bos_id`` before every story (a copy; see :class:`BosStream`)."""
    return np.insert(stream.tokens, stream.offsets[:-1], bos_id)


class BosStream:
    """:func:`with_bos` read on demand: element ``i`` of the virtual (N + S,) array is computed
    from the (memory-mapped) stream, so training never holds the corpus in memory. ``stories``
    (indices into the stream, in order) restricts it to those stories, without a copy."""

    def __init__(self, stream: TokenStream, bos_id: int, stories: np.ndarray | None = None) -> None:
        self.tokens, self.bos_id = stream.tokens, bos_id
        if stories is None:
            stories = np.arange(stream.n_stories)
        stories = np.asarray(stories, dtype=np.int64)
        lengths = stream.offsets[stories + 1] - stream.offsets[stories]
        # virtual index of each story's <s>, and the stream index of its first token
        self.starts = np.zeros(len(stories), dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=self.starts[1:])
        self.first = np.asarray(stream.offsets[stories], dtype=np.int64)
        self.n = int(lengths.sum()) + len(stories)

    def __len__(self) -> int:
        return self.n

    def take(self, idx: np.ndarray) -> np.ndarray:
        """int64 elements at the virtual indices ``idx`` (any shape)."""
        story = np.searchsorted(self.starts, idx, side="right") - 1
        src = self.first[story] + idx - self.starts[story] - 1  # where idx is not a <s>
        at_bos = idx == self.starts[story]
        out = np.asarray(self.tokens[np.where(at_bos, 0, src).ravel()], dtype=np.int64)
        return np.where(at_bos, self.bos_id, out.reshape(idx.shape))


class WindowSampler:
    """Random windows of a flat token array (or a :class:`BosStream`); reproducible and
    resumable (``state_dict``)."""

    def __init__(self, tokens: np.ndarray | BosStream, n_ctx: int, batch_size: int, seed: int):
        if len(tokens) < n_ctx + 2:
            raise HmmLangError(
                f"the training stream has {len(tokens)} tokens, fewer than n_ctx + 1 = "
                f"{n_ctx + 1}; use more stories or a smaller model.n_ctx"
            )
        self.tokens = tokens
        self.n_ctx, self.batch_size = n_ctx, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(n_ctx + 1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_ctx) inputs and (B, n_ctx) next-token targets."""
        hi = len(self.tokens) - self.n_ctx - 1
        starts = torch.randint(0, hi, (self.batch_size,), generator=self.generator)
        idx = (starts[:, None] + self.offsets).numpy()
        if isinstance(self.tokens, BosStream):
            w = torch.from_numpy(self.tokens.take(idx))
        else:
            w = torch.from_numpy(np.asarray(self.tokens[idx], dtype=np.int64))
        return w[:, :-1], w[:, 1:]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def story_chunks(stream: TokenStream, bos_id: int, n_ctx: int, max_stories: int | None = None):
    """Every story as ``<s> story`` inputs and ``story`` targets, cut into non-overlapping
    pieces of at most ``n_ctx`` positions (for activation statistics, where each position is
    wanted once; scoring uses :func:`story_windows`); returns padded (C, n_ctx) inputs,
    targets and a mask."""
    n = stream.n_stories if max_stories is None else min(max_stories, stream.n_stories)
    rows = []
    for i in range(n):
        seq = np.concatenate([[bos_id], stream.story(i)]).astype(np.int64)
        for a in range(0, len(seq) - 1, n_ctx):
            rows.append((seq[a : a + n_ctx], seq[a + 1 : a + 1 + n_ctx], 0, i))
    x, y, mask, _ = _padded(rows, n_ctx)
    return x, y, mask, n


def _padded(rows, n_ctx: int):
    """(W, n_ctx) inputs, targets, scored-mask and the (W,) story of ``rows`` of (inputs,
    targets, first scored position, story)."""
    x = np.zeros((len(rows), n_ctx), dtype=np.int64)
    y = np.zeros_like(x)
    mask = np.zeros_like(x, dtype=bool)
    story = np.zeros(len(rows), dtype=np.int64)
    for r, (inp, tgt, skip, i) in enumerate(rows):
        x[r, : len(inp)] = inp
        y[r, : len(tgt)] = tgt
        mask[r, skip : len(tgt)] = True
        story[r] = i
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask), story


def story_windows(stream: TokenStream, bos_id: int, n_ctx: int, max_stories: int | None = None):
    """Windows that predict every token of every story exactly once, ``</s>`` included.

    A story is read as ``<s> story``. One that fits n_ctx predictions is one window; a longer
    one is scored with a sliding window of stride n_ctx/2: each later window scores only the
    tokens not scored yet, so each of them has at least n_ctx/2 tokens of context. Returns
    (W, n_ctx) inputs, targets and scored-mask, the (W,) story of each window, and the number
    of stories.
    """
    n = stream.n_stories if max_stories is None else min(max_stories, stream.n_stories)
    stride = max(1, n_ctx // 2)
    rows: list[tuple[np.ndarray, np.ndarray, int, int]] = []  # inputs, targets, first scored
    for i in range(n):
        seq = np.concatenate([[bos_id], stream.story(i)]).astype(np.int64)
        length = len(seq) - 1  # predictions: seq[1..length]
        first = min(length, n_ctx)
        rows.append((seq[:first], seq[1 : first + 1], 0, i))
        done = first
        while done < length:
            end = min(done + stride, length)
            a = end - n_ctx
            rows.append((seq[a:end], seq[a + 1 : end + 1], done - a, i))
            done = end
    x, y, mask, story = _padded(rows, n_ctx)
    return x, y, mask, story, n


@torch.no_grad()
def story_nats(
    logits_fn,
    stream: TokenStream,
    bos_id: int,
    n_ctx: int,
    device,
    max_stories: int | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """(S,) next-token nats of ``logits_fn`` on each story (see :func:`story_windows`)."""
    if stream.n_stories == 0:
        raise HmmLangError("no stories to score: the split is empty; give it at least one story")
    x, y, mask, story, n = story_windows(stream, bos_id, n_ctx, max_stories)
    out = np.zeros(n)
    for a in range(0, len(x), batch_size):
        xb, yb, mb = (t[a : a + batch_size].to(device) for t in (x, y, mask))
        logits = logits_fn(xb).float()
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none"
        )
        per_window = (nll.view(mb.shape) * mb).double().sum(1).cpu().numpy()
        np.add.at(out, story[a : a + batch_size], per_window)
    return out


def evaluate(
    logits_fn,
    stream: TokenStream,
    bos_id: int,
    n_ctx: int,
    device,
    max_stories: int | None = None,
    batch_size: int = 32,
) -> Score:
    """Total next-token loss of ``logits_fn`` on the stories, as a :class:`Score`; the one
    scorer of training's evaluations and of the ladder."""
    nats = story_nats(logits_fn, stream, bos_id, n_ctx, device, max_stories, batch_size)
    sub = stream.head(len(nats))
    return score(-float(nats.sum()), sub.n_tokens, sub.n_bytes)
