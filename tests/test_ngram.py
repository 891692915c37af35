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


def _random_stream(seed: int, n_stories: int, vocab: int):
    from hmm_lang.pretokenize import TokenStream

    rng = np.random.default_rng(seed)
    # Zipf-like tokens so that many n-grams repeat and every count-of-count is present
    seqs = [
        np.minimum(rng.zipf(1.3, size=int(rng.integers(1, 60))), vocab - 1).astype(np.uint16)
        for _ in range(n_stories)
    ]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    return TokenStream(
        np.concatenate(seqs), offsets, np.full(n_stories, 10), vocab_size=vocab, eos_id=0
    )


@pytest.mark.parametrize("chunk_tokens", [50, 1000, 1 << 24])
@pytest.mark.parametrize("modified", [True, False])
def test_chunked_counting_is_the_in_memory_model_bit_for_bit(chunk_tokens, modified):
    stream = _random_stream(0, 300, 50)
    a = KneserNeyModel(5, 50, 0, modified=modified).fit(stream.stories())
    b = KneserNeyModel(5, 50, 0, modified=modified).fit_stream(stream, chunk_tokens=chunk_tokens)
    for la, lb in zip(a.levels, b.levels, strict=True):
        for name in vars(la):
            x, y = getattr(la, name), getattr(lb, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name  # exact, not close
    valid = _random_stream(1, 50, 50)
    from hmm_lang.ngram_counts import stream_keys

    keys = stream_keys(valid.tokens, valid.offsets, 5, 0, b.bits)
    assert np.array_equal(a.token_log_probs(valid.stories()), b.log_probs_of_keys(keys))
    # the chunked total differs only in the order of a float sum
    assert b.stream_log_prob(valid, chunk_tokens=37) == pytest.approx(
        a.token_log_probs(valid.stories()).sum(), rel=1e-12
    )


def test_merge_of_runs_with_a_tiny_block_counts_every_key_once(tmp_path):
    from hmm_lang.ngram_counts import count_sorted, sorted_groups

    rng = np.random.default_rng(3)
    blocks = [rng.integers(0, 40, size=int(n)) for n in rng.integers(1, 200, size=25)]
    keys, counts = count_sorted(iter(blocks), tmp_path, block=3, fan_in=4)  # several passes
    u, c = np.unique(np.concatenate(blocks), return_counts=True)
    assert np.array_equal(keys, u) and np.array_equal(counts, c)
    # groups of keys >> 2 are never split across pieces, even with pieces of 2 keys
    seen = np.concatenate([g for _, g, _ in sorted_groups(keys, 2, block=2)])
    assert np.array_equal(seen, np.unique(keys >> 2))


def test_stream_keys_equal_per_story_keys():
    from hmm_lang.ngram import ngram_keys
    from hmm_lang.ngram_counts import stream_keys

    s = _random_stream(2, 40, 30)
    assert np.array_equal(
        stream_keys(s.tokens, s.offsets, 4, 7, 5), ngram_keys(s.stories(), 4, 7, 5)
    )
