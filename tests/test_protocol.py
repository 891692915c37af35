"""The HMM protocol: choices read the dev split only; validation is scored once, at the end."""

import numpy as np
import pytest
import torch

from hmm_lang.devsplit import carve_dev, dev_mask
from hmm_lang.hmm import sample
from hmm_lang.hmm.fit import HMMFitConfig, fit_hmm
from hmm_lang.hmm.model import random_hmm
from hmm_lang.pretokenize import TokenStream


def stream_of(seqs, vocab_size) -> TokenStream:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    return TokenStream(
        np.concatenate(seqs).astype(np.uint16),
        offsets,
        np.array([3 * len(s) for s in seqs]),
        vocab_size=vocab_size,
        eos_id=0,
    )


@pytest.fixture(scope="module")
def data():
    truth = random_hmm(4, 12, seed=3, concentration=0.3, dtype=torch.float64)
    train, _ = sample(truth, 300, 30, seed=0)
    good, _ = sample(truth, 40, 30, seed=1)
    # a validation set whose likelihood falls as training proceeds: another process entirely
    other = random_hmm(4, 12, seed=9, concentration=0.3, dtype=torch.float64)
    bad, _ = sample(other, 40, 30, seed=2)
    return stream_of(train, 12), stream_of(good, 12), stream_of(bad, 12)


@pytest.mark.parametrize(
    "cfg",
    [
        HMMFitConfig(states=5, max_iters=40, tol=1e-5, patience=2, restarts=2),
        HMMFitConfig(cloned=True, clones=2, max_iters=15, tol=1e-5, allocation="auto"),
        HMMFitConfig(blocked=True, states=6, clusters=3, max_iters=15, clustering="auto"),
        HMMFitConfig(blocked=True, states=6, clusters=3, train="grad", embed_dim=8, max_iters=6),
    ],
    ids=["dense", "cloned", "blocked-em", "blocked-grad"],
)
def test_parameters_do_not_depend_on_the_validation_split(data, cfg):
    train, good, bad = data
    a = fit_hmm(train, good, cfg, progress=False)
    b = fit_hmm(train, bad, cfg, progress=False)
    c = fit_hmm(train, None, cfg, progress=False)
    if cfg.cloned or cfg.blocked:
        tensors = lambda r: (r.model.blocks, r.model.start)  # noqa: E731
        assert a.model.escape == b.model.escape == c.model.escape
    else:
        tensors = lambda r: r.model.tensors()  # noqa: E731
    for x, y, z in zip(tensors(a), tensors(b), tensors(c), strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)  # bit-identical
    assert a.choices == b.choices == c.choices
    assert a.valid_score.bits_per_byte < b.valid_score.bits_per_byte  # validation does differ
    assert c.valid_score is None and c.metrics["scored_on"] == "dev"
    assert len(a.valid_story_nats) == good.n_stories
    assert a.valid_story_nats.sum() == pytest.approx(a.valid_score.nats)


def test_fit_records_curves_and_stop_reason(data):
    train, good, _ = data
    res = fit_hmm(
        train, good, HMMFitConfig(states=5, max_iters=200, tol=1e-4, patience=2), progress=False
    )
    m = res.metrics
    assert m["stop_reason"] == "converged" and m["iterations"] == len(m["history"]) < 200
    assert all("dev_nats_per_token" in h and "train_nats_per_token" in h for h in m["history"])
    devs = [h["dev_nats_per_token"] for h in m["history"]]
    assert m["history"][m["best_iteration"]]["dev_nats_per_token"] == min(devs)


def test_dev_split_is_seeded_by_story_and_disjoint():
    seqs = [np.full(3, i) for i in range(400)]
    fit, dev = carve_dev(seqs, 0.05, seed=0)
    assert len(fit) + len(dev) == 400 and 5 <= len(dev) <= 40
    assert not {int(s[0]) for s in fit} & {int(s[0]) for s in dev}
    assert np.array_equal(dev_mask(400, 0.05, 0), dev_mask(400, 0.05, 0))
    assert not np.array_equal(dev_mask(400, 0.05, 0), dev_mask(400, 0.05, 1))
    assert dev_mask(2, 0.05, 0).sum() == 1  # tiny data still gets one dev story


def test_lanes_are_sized_to_the_data():
    from hmm_lang.hmm.fit import LANES, lane_len_for

    cfg = HMMFitConfig()
    small = [np.zeros(n, dtype=np.int64) for n in (30, 80, 200)]
    assert lane_len_for(cfg, small) == 200  # a few stories: lanes as long as the longest
    big = [np.zeros(100, dtype=np.int64)] * (LANES * 20)  # 3M tokens: the large-data lanes
    assert lane_len_for(cfg, big) == cfg.lane_len
    # ragged (dense passes): short lanes on small data, long stories in lanes of their own
    assert lane_len_for(cfg, small, ragged=True) == 1
    mid = [np.zeros(n, dtype=np.int64) for n in [150] * 2000 + [900]]  # 300,900 tokens
    assert lane_len_for(cfg, mid, ragged=True) == -(-300_900 // LANES)
    assert lane_len_for(cfg, big, ragged=True) == cfg.lane_len
    assert lane_len_for(HMMFitConfig(lane_len=64), mid, ragged=True) == 64  # a cap the user set


def test_transformer_dev_carve_is_the_hmm_dev_carve():
    """The transformer's dev stories are those an HMM fit on the same split carves."""
    from hmm_lang.transformer.dev_stop import carve_dev_stream

    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 9, size=n) for n in rng.integers(1, 12, size=60)]
    stream = stream_of(seqs, 9)
    fit_stories, dev = carve_dev_stream(stream, 0.2, seed=3)
    fit = stream.select(fit_stories)
    want_fit, want_dev = carve_dev(seqs, 0.2, seed=3)
    for got, want in ((fit, want_fit), (dev, want_dev)):
        assert got.n_stories == len(want)
        assert all(np.array_equal(got.story(i), s) for i, s in enumerate(want))
    assert fit.n_tokens + dev.n_tokens == sum(len(s) for s in seqs)


def test_bos_stream_of_a_story_subset_is_that_subset_with_bos():
    """The sampler reads the training stories minus dev without copying them."""
    from hmm_lang.transformer.data import BosStream, with_bos

    rng = np.random.default_rng(1)
    stream = stream_of([rng.integers(1, 9, size=n) for n in rng.integers(1, 12, size=40)], 9)
    for stories in (np.arange(40), np.array([0, 3, 4, 5, 17, 39]), np.array([7])):
        want = with_bos(stream.select(stories), bos_id=99)
        got = BosStream(stream, 99, stories)
        assert len(got) == len(want)
        assert np.array_equal(got.take(np.arange(len(want))), want)
