"""Kneser-Ney against NLTK's KneserNeyInterpolated, normalisation, and the unigram model."""

import numpy as np
import pytest

from hmm_lang.errors import HmmLangError
from hmm_lang.ngram import KneserNeyModel, UnigramModel, load_kneser_ney

TEXT = """the cat sat on the mat . the dog sat on the log . a cat saw a dog .
the dog saw the cat on the mat . a bird sat on a log . the bird saw the dog ."""


def corpus():
    words = sorted(set(TEXT.split()))
    ids = {w: i + 1 for i, w in enumerate(words)}  # 0 is <s>
    sents = [np.array([ids[w] for w in line.split()]) for line in TEXT.splitlines()]
    return words, ids, sents


@pytest.mark.parametrize("order", [2, 3])
def test_matches_nltk_kneser_ney_interpolated(order):
    from nltk.lm import KneserNeyInterpolated
    from nltk.util import everygrams

    words, ids, sents = corpus()
    inv = {i: w for w, i in ids.items()} | {0: "<s>"}
    padded = [["<s>"] * (order - 1) + [inv[int(t)] for t in s] for s in sents]
    # the n-grams our model counts: every order-gram ending at a real token, and its suffixes
    grams = [
        [
            tuple(p[i - order + 1 : i + 1])[-n:]
            for i in range(order - 1, len(p))
            for n in range(1, order + 1)
        ]
        for p in padded
    ]
    lm = KneserNeyInterpolated(order, discount=0.1)
    lm.fit(grams, vocabulary_text=["<s>", *words])
    ours = KneserNeyModel(
        order, len(words) + 1, bos_id=0, modified=False, discount=0.1, interpolate_uniform=False
    )
    ours.fit(sents)
    rng = np.random.default_rng(0)
    checked = 0
    for s in sents:
        p = [0] * (order - 1) + s.tolist()
        for i in range(order - 1, len(p)):
            ctx = tuple(inv[t] for t in p[i - order + 1 : i])
            for w in [p[i], int(rng.integers(1, len(words) + 1))]:
                assert ours.probability(p[:i], w) == pytest.approx(lm.score(inv[w], ctx), abs=1e-12)
                checked += 1
    assert checked > 50
    assert everygrams  # imported API exists in this NLTK


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("modified", [True, False])
def test_distributions_sum_to_one(order, modified):
    rng = np.random.default_rng(order)
    seqs = [rng.integers(1, 30, size=rng.integers(5, 40)) for _ in range(100)]
    m = KneserNeyModel(order, 30, bos_id=0, modified=modified).fit(seqs)
    for ctx in ([], [3], [5, 7], [1, 2, 3, 4], [29, 28, 27, 26]):
        total = sum(m.probability(ctx, w) for w in range(30))
        assert total == pytest.approx(1.0, abs=1e-9)


def test_higher_order_fits_training_data_better_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 50, size=60) for _ in range(50)]
    ll = [KneserNeyModel(n, 50, 0).fit(seqs).token_log_probs(seqs).sum() for n in (1, 2, 3)]
    assert ll[0] < ll[1] < ll[2]
    m = KneserNeyModel(3, 50, 0).fit(seqs)
    m.save(tmp_path / "kn.npz")
    again = load_kneser_ney(tmp_path / "kn.npz")
    np.testing.assert_array_equal(again.token_log_probs(seqs), m.token_log_probs(seqs))
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(HmmLangError, match="cannot read n-gram model"):
        load_kneser_ney(tmp_path / "bad.npz")


def test_unseen_tokens_have_nonzero_probability():
    m = KneserNeyModel(3, 100, 0).fit([np.array([1, 2, 3, 1, 2, 3])])
    assert np.isfinite(m.token_log_probs([np.array([50, 60, 70])])).all()
    u = UnigramModel(100).fit([np.array([1, 2, 3])])
    assert np.isfinite(u.token_log_probs([np.array([99])])).all()
    assert np.exp(u.log_probs).sum() == pytest.approx(1.0)


def test_order_too_large_for_key():
    with pytest.raises(HmmLangError, match="bits per n-gram key"):
        KneserNeyModel(5, 65536, 0).fit([np.array([1, 2])])
