"""The transformer scorer: every token predicted once, with at least n_ctx/2 tokens of context."""

import numpy as np
import torch

from hmm_lang.pretokenize import TokenStream
from hmm_lang.transformer.data import story_nats, story_windows


def stream(lengths, v=20, seed=0):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, v, size=n) for n in lengths]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return TokenStream(
        np.concatenate(seqs).astype(np.uint16), offsets, np.array(lengths), v, eos_id=0
    )


def test_each_token_scored_once_with_half_a_context():
    n_ctx = 8
    s = stream([3, 8, 9, 30])
    x, y, mask, story, n = story_windows(s, bos_id=19, n_ctx=n_ctx)
    assert n == 4
    for i in range(4):
        rows = np.flatnonzero(story == i)
        seq = np.concatenate([[19], s.story(i)])
        scored = []
        for r in rows:
            for p in np.flatnonzero(mask[r].numpy()):
                scored.append(int(y[r, p]))
                # later windows: at least n_ctx/2 tokens of context before each scored target
                assert r == rows[0] or p + 1 >= n_ctx // 2
        assert scored == list(seq[1:])  # every token once, in order
    assert len(np.flatnonzero(story == 3)) == 1 + int(np.ceil((30 - 8) / 4))


def test_windowed_score_equals_full_context_for_a_bigram_model():
    v = 20
    table = torch.randn(v, v)

    def bigram_logits(x):  # depends on the current token only: windows change nothing
        return table[x]

    s = stream([5, 40, 17], v)
    nats = story_nats(bigram_logits, s, bos_id=19, n_ctx=8, device="cpu")
    logp = torch.log_softmax(table, -1)
    for i in range(s.n_stories):
        seq = np.concatenate([[19], s.story(i)]).astype(np.int64)
        want = -float(sum(logp[a, b] for a, b in zip(seq[:-1], seq[1:], strict=True)))
        assert abs(nats[i] - want) < 1e-4


def test_bos_stream_reads_the_with_bos_array_without_building_it():
    from hmm_lang.transformer.data import BosStream, WindowSampler, with_bos

    rng = np.random.default_rng(0)
    seqs = [rng.integers(2, 50, size=int(n)).astype(np.uint16) for n in rng.integers(1, 9, 40)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    stream = TokenStream(np.concatenate(seqs), offsets, np.ones(40, int), 50, 1)
    full, lazy = with_bos(stream, 0), BosStream(stream, 0)
    assert len(lazy) == len(full)
    idx = np.arange(len(full)).reshape(-1, 1)
    assert np.array_equal(lazy.take(idx)[:, 0], full)
    a, b = WindowSampler(full, 5, 16, seed=3), WindowSampler(lazy, 5, 16, seed=3)
    for _ in range(5):  # the same windows, so training is unchanged
        for x, y in zip(a.next(), b.next(), strict=True):
            assert torch.equal(x, y)
