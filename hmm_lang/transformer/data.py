"""Token batches for training and per-story evaluation of the transformer.

Training reads random windows of ``n_ctx + 1`` tokens from the concatenated training stories,
each story written as ``<s> story </s>``. Evaluation scores every validation story on its own,
from ``<s>``, like the HMM and n-gram models, so bits per byte compare across families.
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
    """(N + S,) the stream with ``bos_id`` before every story."""
    return np.insert(stream.tokens, stream.offsets[:-1], bos_id)


class WindowSampler:
    """Random windows of a flat token array; reproducible and resumable (``state_dict``)."""

    def __init__(self, tokens: np.ndarray, n_ctx: int, batch_size: int, seed: int):
        if len(tokens) < n_ctx + 2:
            raise HmmLangError(
                f"the training stream has {len(tokens)} tokens, fewer than n_ctx + 1 = "
                f"{n_ctx + 1}; use more stories or a smaller model.n_ctx"
            )
        self.tokens = torch.from_numpy(tokens.astype(np.int64))
        self.n_ctx, self.batch_size = n_ctx, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.offsets = torch.arange(n_ctx + 1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_ctx) inputs and (B, n_ctx) next-token targets."""
        hi = len(self.tokens) - self.n_ctx - 1
        starts = torch.randint(0, hi, (self.batch_size,), generator=self.generator)
        w = self.tokens[starts[:, None] + self.offsets]
        return w[:, :-1], w[:, 1:]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def story_chunks(stream: TokenStream, bos_id: int, n_ctx: int, max_stories: int | None = None):
    """Every story as ``<s> story`` inputs and ``story`` targets, cut into pieces of at most
    ``n_ctx`` predictions; returns padded (C, n_ctx) inputs, targets and a mask."""
    n = stream.n_stories if max_stories is None else min(max_stories, stream.n_stories)
    inputs, targets = [], []
    for i in range(n):
        seq = np.concatenate([[bos_id], stream.story(i)]).astype(np.int64)
        for a in range(0, len(seq) - 1, n_ctx):
            inputs.append(seq[a : a + n_ctx])
            targets.append(seq[a + 1 : a + 1 + n_ctx])
    x = np.zeros((len(inputs), n_ctx), dtype=np.int64)
    y = np.zeros_like(x)
    mask = np.zeros_like(x, dtype=bool)
    for r, (inp, tgt) in enumerate(zip(inputs, targets, strict=True)):
        x[r, : len(inp)] = inp
        y[r, : len(tgt)] = tgt
        mask[r, : len(tgt)] = True
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask), n


@torch.no_grad()
def evaluate(
    logits_fn,
    stream: TokenStream,
    bos_id: int,
    n_ctx: int,
    device,
    max_stories: int | None = None,
    batch_size: int = 32,
) -> Score:
    """Total next-token loss of ``logits_fn`` on each validation story, as a :class:`Score`."""
    if stream.n_stories == 0:
        raise HmmLangError("the validation split is empty; give it at least one story")
    x, y, mask, n = story_chunks(stream, bos_id, n_ctx, max_stories)
    total = 0.0
    for a in range(0, len(x), batch_size):
        xb, yb, mb = (t[a : a + batch_size].to(device) for t in (x, y, mask))
        logits = logits_fn(xb).float()
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none"
        )
        total += float(nll[mb.reshape(-1)].double().sum())
    sub = stream.head(n)
    return score(-total, sub.n_tokens, sub.n_bytes)
