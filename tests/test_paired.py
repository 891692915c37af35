"""Paired differences between two models on the same stories: known answers."""

import math

import numpy as np
import pytest

from hmm_lang.errors import HmmLangError
from hmm_lang.experiments.paired import (
    best_hmm_pairs,
    load_story_nats,
    paired_markdown,
    paired_rows,
    save_story_nats,
)


def _stories(n=300, seed=0):
    rng = np.random.default_rng(seed)
    story_bytes = rng.integers(200, 2000, size=n).astype(np.float64)
    hardness = rng.gamma(4.0, 0.25, size=n)  # stories differ a lot in difficulty
    return story_bytes, hardness


def test_a_constant_per_byte_gap_has_a_zero_width_interval():
    # b costs exactly 0.1 nats more per byte on every story: every resample gives the same
    # difference, -0.1/ln 2 bits/byte, although each model's own interval is wide
    story_bytes, hardness = _stories()
    a = hardness * story_bytes
    nats = {"a": a, "b": a + 0.1 * story_bytes}
    (r,) = paired_rows(nats, story_bytes, [("a", "b")], n_boot=500)
    want = -0.1 / math.log(2)
    assert r["diff"] == pytest.approx(want) and r["diff_lo"] == pytest.approx(want)
    assert r["diff_hi"] == pytest.approx(want)
    assert r["a_hi"] - r["a_lo"] > 0.05  # the stories' spread, which the pairing cancels
    assert r["a_wins"] == 1.0


def test_pairing_is_tighter_than_two_separate_intervals():
    story_bytes, hardness = _stories(seed=1)
    rng = np.random.default_rng(2)
    a = hardness * story_bytes
    b = (hardness + 0.02 + 0.05 * rng.standard_normal(len(a))) * story_bytes
    (r,) = paired_rows({"a": a, "b": b}, story_bytes, [("a", "b")], n_boot=1000)
    assert r["diff"] == pytest.approx(r["a_bits_per_byte"] - r["b_bits_per_byte"])
    assert r["diff_lo"] < r["diff"] < r["diff_hi"] < 0  # b is worse, and the interval says so
    assert r["diff_hi"] - r["diff_lo"] < 0.2 * (r["a_hi"] - r["a_lo"])
    # the unpaired intervals overlap although the paired one excludes zero
    assert r["a_hi"] > r["b_lo"]
    table = paired_markdown([r], "toy")
    assert table.startswith("### toy") and f"{r['diff']:+.4f}" in table


def test_story_nats_round_trip_and_errors(tmp_path):
    story_bytes, hardness = _stories(n=20)
    nats = {"KN 5-gram": hardness * story_bytes, "HMM K=16": 2 * hardness * story_bytes}
    path = tmp_path / "story_nats_1024.npz"
    save_story_nats(path, nats, story_bytes)
    back, sb = load_story_nats(path)
    assert set(back) == set(nats) and np.array_equal(sb, story_bytes)
    assert all(np.array_equal(back[k], nats[k]) for k in nats)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    with pytest.raises(ValueError, match="HMM K=16"):
        save_story_nats(path, {"HMM K=16": np.ones(3)}, story_bytes)
    with pytest.raises(HmmLangError, match="no per-story nats for \\['KN 2-gram'\\]"):
        paired_rows(back, sb, [("KN 2-gram", "HMM K=16")])
    with pytest.raises(HmmLangError, match="no missing.npz in .*it has: story_nats_1024.npz"):
        load_story_nats(tmp_path / "missing.npz")
    with pytest.raises(HmmLangError, match="no such folder"):
        load_story_nats(tmp_path / "nope" / "story_nats_1024.npz")
    (tmp_path / "story_nats_2048.npz").write_bytes(b"not a zip")
    with pytest.raises(HmmLangError, match="not a per-story nats file"):
        load_story_nats(tmp_path / "story_nats_2048.npz")


def test_best_hmm_pairs_takes_the_best_hmm_of_that_vocab_size():
    rows = [
        {"vocab_size": 1024, "family": "n-gram", "model": "KN 3-gram", "bits_per_byte": 1.2},
        {"vocab_size": 1024, "family": "dense HMM", "model": "HMM K=64", "bits_per_byte": 1.9},
        {"vocab_size": 1024, "family": "cloned HMM", "model": "cloned 4095", "bits_per_byte": 1.3},
        {"vocab_size": 1024, "family": "transformer", "model": "tf", "bits_per_byte": 1.0},
        {"vocab_size": 2048, "family": "blocked HMM", "model": "blocked", "bits_per_byte": 1.1},
        {"vocab_size": 1024, "family": "unigram", "model": "unigram", "bits_per_byte": 2.6},
    ]
    assert best_hmm_pairs(rows, 1024) == [("cloned 4095", "KN 3-gram"), ("cloned 4095", "tf")]
    with pytest.raises(HmmLangError, match="no HMM row at V=4096"):
        best_hmm_pairs(rows, 4096)
