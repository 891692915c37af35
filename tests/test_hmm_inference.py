"""Known answers for the dense HMM: Wikipedia's Viterbi example, brute-force enumeration."""

import itertools
import math

import numpy as np
import pytest
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm import (
    CategoricalHMM,
    expected_counts,
    forward,
    log_likelihood,
    pack_lanes,
    posteriors,
    random_hmm,
    sample,
    viterbi,
)
from hmm_lang.hmm.batching import LaneBatch, check_sequences


def wikipedia_hmm():
    # https://en.wikipedia.org/wiki/Viterbi_algorithm: states Healthy, Fever;
    # observations normal, cold, dizzy
    return CategoricalHMM(
        torch.tensor([0.6, 0.4], dtype=torch.float64),
        torch.tensor([[0.7, 0.3], [0.4, 0.6]], dtype=torch.float64),
        torch.tensor([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64),
    )


def test_wikipedia_viterbi():
    path, logp = viterbi(wikipedia_hmm(), [0, 1, 2])  # normal, cold, dizzy
    assert path.tolist() == [0, 0, 1]  # Healthy, Healthy, Fever
    assert math.isclose(math.exp(logp), 0.01512, rel_tol=1e-9)


def brute_force(hmm, x):
    """log P(x), posteriors and expected transitions by enumerating every state path."""
    k, t = hmm.n_states, len(x)
    s, a, b = (m.double().numpy() for m in hmm.tensors())
    total, gamma, xi = 0.0, np.zeros((t, k)), np.zeros((k, k))
    for path in itertools.product(range(k), repeat=t):
        p = s[path[0]] * b[path[0], x[0]]
        for i in range(1, t):
            p *= a[path[i - 1], path[i]] * b[path[i], x[i]]
        total += p
        for i, st in enumerate(path):
            gamma[i, st] += p
        for i in range(1, t):
            xi[path[i - 1], path[i]] += p
    return math.log(total), gamma / total, xi / total


def best_path_brute(hmm, x):
    k = hmm.n_states
    s, a, b = (m.double().numpy() for m in hmm.tensors())
    best = max(
        itertools.product(range(k), repeat=len(x)),
        key=lambda path: (
            np.log(s[path[0]] * b[path[0], x[0]])
            + sum(np.log(a[path[i - 1], path[i]] * b[path[i], x[i]]) for i in range(1, len(x)))
        ),
    )
    return list(best)


@pytest.fixture(params=[1, 4, 7, 4096], ids=lambda r: f"count_rows{r}")
def count_rows(request, monkeypatch):
    """Counts added every step, every few steps (chunks end mid-sequence, the last one
    partial) and once per batch: all must give the same statistics."""
    from hmm_lang.hmm import inference

    monkeypatch.setattr(inference, "COUNT_ROWS", request.param)
    return request.param


@pytest.mark.parametrize("k, t, seed", [(1, 4, 0), (2, 5, 1), (3, 6, 2), (3, 1, 3)])
def test_forward_backward_equal_enumeration(k, t, seed, count_rows):
    hmm = random_hmm(k, 4, seed=seed, dtype=torch.float64)
    x = np.random.default_rng(seed).integers(0, 4, size=t)
    logp, gamma, xi = brute_force(hmm, x)
    batch = pack_lanes([x])[0]
    stats = expected_counts(hmm, batch)
    assert math.isclose(stats.log_likelihood, logp, rel_tol=1e-10)
    assert math.isclose(log_likelihood(hmm, [batch])[0], logp, rel_tol=1e-10)
    np.testing.assert_allclose(posteriors(hmm, batch)[0].numpy(), gamma, atol=1e-10)
    np.testing.assert_allclose(stats.trans.numpy(), xi, atol=1e-10)
    np.testing.assert_allclose(stats.start.numpy(), gamma[0], atol=1e-10)
    emit = np.zeros((k, 4))
    for i, tok in enumerate(x):
        emit[:, tok] += gamma[i]
    np.testing.assert_allclose(stats.emit.numpy(), emit, atol=1e-10)
    assert viterbi(hmm, x)[0].tolist() == best_path_brute(hmm, x)


def _flipped(b: LaneBatch) -> LaneBatch:
    """The same lanes, shortest first: padding inside the computed rows."""
    return LaneBatch(b.tokens.flip(0), b.start.flip(0), b.valid.flip(0), b.story.flip(0))


@pytest.mark.parametrize("layout", ["packed", "ragged", "shortest_first"])
def test_lanes_and_padding_equal_one_sequence_at_a_time(count_rows, layout, monkeypatch):
    """Several sequences per lane, padding, lanes of unequal length computed only while they
    run (ragged: sequences longer than lane_len in lanes of their own), lanes in either order:
    the same statistics, likelihoods and posteriors as one sequence at a time. Unset memory
    is NaN here, so a read of a row the passes skip would show."""
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: empty(*a, **kw).fill_(float("nan")))
    hmm = random_hmm(5, 7, seed=3, dtype=torch.float64)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 7, size=n) for n in rng.integers(1, 40, size=30)]
    single = [expected_counts(hmm, pack_lanes([s])[0]) for s in seqs]
    if layout == "ragged":
        batches = list(pack_lanes(seqs, batch_tokens=200, lane_len=20, ragged=True))
        assert max(b.valid.sum(1).max() for b in batches) > 20  # a lane of its own
    else:
        batches = list(pack_lanes(seqs, batch_tokens=200, lane_len=60))
    if layout == "shortest_first":
        batches = [_flipped(b) for b in batches]
    assert len(batches) > 1 and any((~b.valid).any() for b in batches)
    assert any(b.start.sum(1).max() > 1 for b in batches)  # several sequences share a lane
    packed = [expected_counts(hmm, b) for b in batches]
    for field in ("start", "trans", "emit"):
        a = sum(getattr(s, field) for s in single)
        b = sum(getattr(s, field) for s in packed)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert math.isclose(
        sum(s.log_likelihood for s in single), sum(s.log_likelihood for s in packed)
    )
    assert sum(s.n_tokens for s in packed) == sum(len(s) for s in seqs)
    assert sum(s.n_sequences for s in packed) == len(seqs)
    per_story = np.zeros(len(seqs))
    ll, n_tok = log_likelihood(hmm, batches, per_story=per_story)
    assert n_tok == sum(len(s) for s in seqs)
    np.testing.assert_allclose(per_story, [s.log_likelihood for s in single], rtol=1e-10)
    for b in batches:
        post = posteriors(hmm, b)  # (N, T, K)
        assert torch.isfinite(post).all()
        alpha = forward(hmm, b).alpha.transpose(0, 1)  # padding holds the start distribution
        torch.testing.assert_close(alpha[~b.valid], hmm.start.expand(int((~b.valid).sum()), -1))
        for i in b.story.unique().tolist():
            if i >= 0:
                one = posteriors(hmm, pack_lanes([seqs[i]])[0])[0]
                torch.testing.assert_close(post[b.story == i], one, rtol=1e-10, atol=1e-12)


def test_hand_built_lanes_with_leading_and_trailing_padding(count_rows):
    """A lane whose sequence begins after padding, and a final step with no token at all."""
    hmm = random_hmm(4, 6, seed=5, dtype=torch.float64)
    a, b = np.array([1, 2, 3, 4, 5]), np.array([0, 5, 2])
    tokens = torch.zeros(2, 7, dtype=torch.long)
    tokens[0, :5], tokens[1, 3:6] = torch.from_numpy(a), torch.from_numpy(b)
    valid = torch.zeros(2, 7, dtype=torch.bool)
    valid[0, :5] = valid[1, 3:6] = True
    start = torch.zeros_like(valid)
    start[0, 0] = start[1, 3] = True
    story = torch.full((2, 7), -1)
    story[valid] = torch.tensor([0] * 5 + [1] * 3)
    got = expected_counts(hmm, LaneBatch(tokens, start, valid, story))
    want = [expected_counts(hmm, pack_lanes([s])[0]) for s in (a, b)]
    for field in ("start", "trans", "emit"):
        torch.testing.assert_close(getattr(got, field), sum(getattr(w, field) for w in want))
    assert math.isclose(got.log_likelihood, sum(w.log_likelihood for w in want))
    assert (got.n_tokens, got.n_sequences) == (8, 2)


def test_lanes_are_longest_first_and_ragged_lanes_fit_the_batch():
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 7, size=n) for n in rng.integers(1, 90, size=200)]
    longest = max(len(s) for s in seqs)
    ragged = pack_lanes(seqs, batch_tokens=900, lane_len=20, ragged=True)
    for b in ragged:
        used = b.valid.sum(1)
        assert (used[:-1] >= used[1:]).all()  # active lanes are a prefix at every step
        assert b.valid.numel() <= 900  # the (N, T) rectangle stays within batch_tokens
        # a lane longer than lane_len holds one sequence
        assert (b.start.sum(1)[used > 20] == 1).all()
    assert sum(b.n_tokens for b in ragged) == sum(len(s) for s in seqs)
    plain = pack_lanes(seqs, batch_tokens=900, lane_len=20)
    assert max(b.valid.sum(1).max() for b in plain) > 20  # lanes as long as the longest
    assert all(b.valid.shape[0] == 900 // longest for b in list(plain)[:-1])


def test_float32_matches_float64_on_long_sequences():
    hmm = random_hmm(16, 50, seed=1, dtype=torch.float64)
    x = np.random.default_rng(1).integers(0, 50, size=3000)  # would underflow unscaled
    batch = pack_lanes([x])[0]
    ll64 = log_likelihood(hmm, [batch])[0]
    ll32 = log_likelihood(hmm.to(dtype=torch.float32), [batch])[0]
    assert math.isfinite(ll64) and abs(ll32 - ll64) / abs(ll64) < 1e-5


def test_float32_counts_match_float64_on_long_sequences():
    """No underflow over 3,000 steps (two sequences of unequal length in one lane batch): the
    counts of a float32 E-step agree with float64's."""
    hmm = random_hmm(16, 50, seed=2, dtype=torch.float64)
    x = np.random.default_rng(2).integers(0, 50, size=3000)
    batch = pack_lanes([x, x[:700]], lane_len=3000)[0]
    s64 = expected_counts(hmm, batch)
    s32 = expected_counts(hmm.to(dtype=torch.float32), batch)
    for field in ("start", "trans", "emit"):
        a, b = getattr(s64, field), getattr(s32, field).double()
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, rtol=2e-3, atol=2e-3 * float(a.abs().max()))
    assert abs(s32.log_likelihood - s64.log_likelihood) / abs(s64.log_likelihood) < 1e-5


def test_sampling_frequencies_and_eos():
    hmm = wikipedia_hmm()
    seqs, paths = sample(hmm, 4000, 3, seed=0)
    first_states = np.array([p[0] for p in paths])
    assert abs(first_states.mean() - 0.4) < 0.03
    seqs, _ = sample(hmm, 50, 30, eos_id=2, seed=1)
    assert all(s[-1] == 2 or len(s) == 30 for s in seqs)
    assert all(2 not in s[:-1] for s in seqs)


def test_bad_input():
    with pytest.raises(HmmLangError, match="outside the model's vocabulary"):
        check_sequences([np.array([1, 9])], vocab_size=5)
    with pytest.raises(HmmLangError, match="sequence 1 is empty"):
        check_sequences([np.array([1]), np.array([], dtype=int)], vocab_size=5)
    with pytest.raises(HmmLangError, match="empty"):
        check_sequences([], vocab_size=5)
    with pytest.raises(HmmLangError, match="at least 1"):
        random_hmm(0, 5)


def test_save_load_and_corrupt_files(tmp_path):
    hmm = random_hmm(3, 5, seed=0)
    hmm.save(tmp_path / "h.pt", {"n_states": 3})
    loaded, cfg = CategoricalHMM.load(tmp_path / "h.pt")
    assert cfg == {"n_states": 3} and torch.equal(loaded.emit, hmm.emit)
    bad = CategoricalHMM(hmm.start, hmm.trans.clone(), hmm.emit)
    bad.trans[0, 0] = float("nan")
    bad.save(tmp_path / "nan.pt")
    with pytest.raises(HmmLangError, match="NaN"):
        CategoricalHMM.load(tmp_path / "nan.pt")
    neg = CategoricalHMM(hmm.start, hmm.trans, -hmm.emit)
    neg.save(tmp_path / "neg.pt")
    with pytest.raises(HmmLangError, match="negative"):
        CategoricalHMM.load(tmp_path / "neg.pt")
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "h.pt").read_bytes()[:100])
    with pytest.raises(HmmLangError, match="cannot read"):
        CategoricalHMM.load(tmp_path / "trunc.pt")


def test_batches_built_on_demand_equal_cached_batches():
    from hmm_lang.hmm.batching import pack_lanes

    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 9, size=int(n)).astype(np.uint16) for n in rng.integers(1, 30, 200)]
    cached = pack_lanes(seqs, batch_tokens=256, lane_len=32)
    lazy = pack_lanes(seqs, batch_tokens=256, lane_len=32, cache_tokens=0)
    assert lazy._cache is None and cached._cache is not None and len(lazy) == len(cached) > 1
    for a, b in zip(cached, lazy, strict=True):
        for name in ("tokens", "start", "valid", "story"):
            assert torch.equal(getattr(a, name), getattr(b, name))
    assert sum(b.n_tokens for b in lazy) == sum(map(len, seqs))
