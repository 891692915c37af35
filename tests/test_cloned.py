"""Cloned HMM: one clone per token is the ML bigram model; EM improves; API parity."""

import math

import numpy as np
import pytest
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm import pack_lanes
from hmm_lang.hmm.cloned import ClonedHMM
from hmm_lang.hmm.cloned_init import allocate_clones, init_cloned_hmm


def data(v=12, n=60, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, v, size=rng.integers(2, 30)) for _ in range(n)]


def bigram_mle_loglik(seqs, v):
    pairs = np.zeros((v, v))
    for s in seqs:
        np.add.at(pairs, (s[:-1], s[1:]), 1)
    firsts = np.bincount([s[0] for s in seqs], minlength=v) / len(seqs)
    cond = pairs / np.maximum(pairs.sum(1, keepdims=True), 1)
    return sum(math.log(firsts[s[0]]) + np.log(cond[s[:-1], s[1:]]).sum() for s in seqs)


def em(model, batches, iters, smoothing=0.0):
    for _ in range(iters):
        stats = model.expected_counts(batches[0])
        for b in batches[1:]:
            stats.add_(model.expected_counts(b))
        model = model.m_step(stats, smoothing)
    return model


def test_one_clone_per_token_equals_ml_bigram():
    seqs, v = data(), 12
    model = init_cloned_hmm(seqs, v, clones=1, escape=0.0)
    batches = pack_lanes(seqs, batch_tokens=256, lane_len=64)
    model = em(model, batches, 1)
    ll, n = model.log_likelihood(batches)
    assert n == sum(len(s) for s in seqs)
    assert ll == pytest.approx(bigram_mle_loglik(seqs, v), rel=1e-6)


@pytest.mark.parametrize("escape", [0.0, 0.05])
def test_em_never_decreases_and_clones_help(escape):
    rng = np.random.default_rng(1)
    # a second-order process: the next token depends on the two before it
    seqs = []
    for _ in range(80):
        s = [0, 1]
        for _ in range(40):
            s.append((s[-1] + 2 * s[-2] + int(rng.random() < 0.1)) % 6)
        seqs.append(np.array(s))
    batches = pack_lanes(seqs, batch_tokens=1024, lane_len=64)
    lls = []
    model = init_cloned_hmm(seqs, 6, clones=4, escape=escape, seed=0)
    for _ in range(15):
        ll, _ = model.log_likelihood(batches)
        lls.append(ll)
        model = em(model, batches, 1)
    assert all(b >= a - 1e-6 * abs(a) for a, b in zip(lls, lls[1:], strict=False))
    one = em(init_cloned_hmm(seqs, 6, clones=1, escape=escape), batches, 1)
    assert lls[-1] > one.log_likelihood(batches)[0] + 100  # clones capture the 2nd order


def test_escape_gives_unseen_bigrams_probability():
    seqs = [np.array([0, 1, 2, 3])] * 10
    model = init_cloned_hmm(seqs, 5, clones=2, escape=0.01)
    ll, _ = model.log_likelihood(pack_lanes([np.array([3, 0, 4, 4])]))
    assert math.isfinite(ll)
    zero = init_cloned_hmm(seqs, 5, clones=2, escape=0.0)
    assert zero.log_likelihood(pack_lanes([np.array([2, 0])]))[0] == -math.inf
    # a token never followed in training (3) escapes with probability 1: still finite
    assert math.isfinite(zero.log_likelihood(pack_lanes([np.array([3, 0])]))[0])


def test_lane_packing_equals_one_at_a_time():
    seqs, v = data(8, 40, 2), 8
    model = init_cloned_hmm(seqs, v, clones=3, escape=0.02, seed=2)
    packed = model.expected_counts(pack_lanes(seqs, batch_tokens=10_000, lane_len=128)[0])
    single = [model.expected_counts(pack_lanes([s])[0]) for s in seqs]
    torch.testing.assert_close(packed.blocks, sum(s.blocks for s in single))
    torch.testing.assert_close(packed.start, sum(s.start for s in single))
    assert packed.log_likelihood == pytest.approx(sum(s.log_likelihood for s in single))


def test_viterbi_sample_save_load(tmp_path):
    seqs, v = data(10, 50, 3), 10
    model = em(init_cloned_hmm(seqs, v, clones=3, escape=0.01), pack_lanes(seqs), 3)
    path, logp = model.viterbi(seqs[0])
    assert (
        len(path) == len(seqs[0])
        and (path < 3).all()
        and logp <= model.log_likelihood(pack_lanes([seqs[0]]))[0] + 1e-9
    )
    samples = model.sample(5, 20, eos_id=None, seed=0)
    assert all(len(s) == 20 and s.max() < v for s in samples)
    model.save(tmp_path / "c.pt", {"clones": 3})
    again, cfg = ClonedHMM.load(tmp_path / "c.pt")
    assert cfg == {"clones": 3} and torch.equal(again.blocks, model.blocks)
    (tmp_path / "bad.pt").write_bytes(b"xx")
    with pytest.raises(HmmLangError, match="cannot read"):
        ClonedHMM.load(tmp_path / "bad.pt")


def test_allocation_by_frequency():
    counts = np.array([1000, 100, 10, 1, 0])
    n = allocate_clones(counts, total_states=20, max_clones=8)
    assert n.min() >= 1 and n.max() <= 8 and abs(int(n.sum()) - 20) <= 2
    assert list(n) == sorted(n, reverse=True)
    seqs = [np.array([0, 1, 0, 2, 0, 1, 3])]
    model = init_cloned_hmm(seqs, 5, clones=n, escape=0.01)
    assert model.n_states == int(n.sum())
    assert not model.start[~model.active].any()


def test_kn_bigram_escape_is_a_proper_hmm_and_beats_the_unigram_escape():
    from hmm_lang.hmm.cloned_init import escape_distributions

    rng = np.random.default_rng(5)
    # a sparse bigram process: each token is followed by one of two tokens
    succ = rng.integers(1, 12, size=(12, 2))
    seqs = []
    for _ in range(200):
        s = [int(rng.integers(1, 12))]
        for _ in range(rng.integers(5, 25)):
            s.append(int(succ[s[-1], rng.integers(0, 2)]))
        seqs.append(np.array(s + [0]))
    q, first, n_par = escape_distributions(seqs, 12, "kn-bigram", eos_id=0)
    assert np.allclose(q.sum(1), 1.0) and np.isclose(first.sum(), 1.0) and n_par > 0
    held = seqs[150:]
    kn = init_cloned_hmm(seqs[:150], 12, clones=2, escape=0.2, escape_model="kn-bigram", eos_id=0)
    uni = init_cloned_hmm(seqs[:150], 12, clones=2, escape=0.2, escape_model="unigram", eos_id=0)
    assert kn.log_likelihood(pack_lanes(held))[0] > uni.log_likelihood(pack_lanes(held))[0]
    # every row of the full transition matrix sums to one: total probability of all
    # length-2 continuations equals 1 (brute force over tokens)
    total = sum(
        math.exp(kn.log_likelihood(pack_lanes([np.array([3, a, b])]))[0])
        for a in range(12)
        for b in range(12)
    )
    p3 = math.exp(kn.log_likelihood(pack_lanes([np.array([3])]))[0])
    assert total == pytest.approx(p3, rel=1e-5)
