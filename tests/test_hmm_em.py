"""EM: monotone objective, recovery of a known HMM, the class-bigram start, online EM."""

import numpy as np
import pytest
import torch

from hmm_lang.hmm import CategoricalHMM, e_step, fit_em, log_likelihood, pack_lanes, sample
from hmm_lang.hmm.init import class_bigram_init, initial_hmm
from hmm_lang.hmm.model import random_hmm


def true_hmm():
    return CategoricalHMM(
        torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64),
        torch.tensor([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.3, 0.1, 0.6]], dtype=torch.float64),
        torch.tensor(
            [
                [0.7, 0.2, 0.05, 0.05, 0.0, 0.0],
                [0.0, 0.05, 0.7, 0.2, 0.05, 0.0],
                [0.05, 0.0, 0.0, 0.1, 0.25, 0.6],
            ],
            dtype=torch.float64,
        ),
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.5])
def test_em_objective_never_decreases(smoothing):
    seqs, _ = sample(true_hmm(), 200, 40, seed=0)
    batches = pack_lanes(seqs, batch_tokens=2000)
    start = random_hmm(4, 6, seed=1, dtype=torch.float64)
    res = fit_em(start, batches, max_iter=30, tol=0.0, smoothing=smoothing, progress=False)
    obj = [r.objective for r in res.monitor.history]
    assert len(obj) == 30 and res.monitor.n_decreases == 0
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(obj, obj[1:], strict=False))
    assert obj[-1] > obj[0]


def _match_states(est: torch.Tensor, true: torch.Tensor) -> list[int]:
    """The permutation of estimated states that best matches the true emission rows."""
    import itertools

    k = true.shape[0]
    return list(
        min(
            itertools.permutations(range(k)), key=lambda p: float((est[list(p)] - true).abs().sum())
        )
    )


def test_recovers_a_known_hmm_from_200k_samples():
    truth = true_hmm()
    seqs, _ = sample(truth, 2000, 100, seed=0)  # 200k tokens
    held_out, _ = sample(truth, 200, 100, seed=1)
    train = pack_lanes(seqs, batch_tokens=1 << 18)
    valid = pack_lanes(held_out)
    best = None
    for seed in range(3):  # restarts, as a user would run them
        res = fit_em(
            random_hmm(3, 6, seed=seed, dtype=torch.float64),
            train,
            max_iter=150,
            tol=1e-7,
            smoothing=0.0,
            progress=False,
        )
        ll = res.monitor.history[-1].log_likelihood
        if best is None or ll > best[0]:
            best = (ll, res.hmm)
    est = best[1]
    perm = _match_states(est.emit, truth.emit)
    torch.testing.assert_close(est.emit[perm], truth.emit, atol=0.03, rtol=0)
    torch.testing.assert_close(est.trans[perm][:, perm], truth.trans, atol=0.05, rtol=0)
    ll_est, n = log_likelihood(est, valid)
    ll_true, _ = log_likelihood(truth, valid)
    assert (ll_true - ll_est) / n < 0.005  # nats per token


def test_class_bigram_init_beats_random_start_and_unigram():
    # a corpus with clear word classes: determiner -> noun -> verb cycles
    rng = np.random.default_rng(0)
    det, noun, verb = np.arange(0, 3), np.arange(3, 13), np.arange(13, 20)
    seqs = []
    for _ in range(300):
        seqs.append(
            np.concatenate(
                [[rng.choice(det), rng.choice(noun), rng.choice(verb)] for _ in range(8)]
            )
        )
    batches = pack_lanes(seqs)
    unigram = np.bincount(np.concatenate(seqs), minlength=20) / sum(len(s) for s in seqs)
    unigram_ll = float(np.log(unigram[np.concatenate(seqs)]).sum())
    smart = class_bigram_init(seqs, 3, 20, seed=0)
    rand = random_hmm(3, 20, seed=0)
    ll_smart = e_step(smart, batches).log_likelihood
    ll_rand = e_step(rand, batches).log_likelihood
    assert ll_smart > unigram_ll + 0.5 * len(seqs) * 24  # far above the unigram level
    assert ll_smart > ll_rand
    with pytest.raises(Exception, match="unknown HMM initialisation"):
        initial_hmm("magic", seqs, 3, 20)


def test_more_states_than_tokens_in_init():
    seqs = [np.array([0, 1, 2, 1, 0, 2])] * 5
    hmm = class_bigram_init(seqs, 8, 4, seed=0)
    assert hmm.n_states == 8 and hmm.emit.shape == (8, 4)


def test_early_stopping_keeps_best_dev_parameters():
    seqs, _ = sample(true_hmm(), 300, 30, seed=2)
    dev, _ = sample(true_hmm(), 50, 30, seed=3)
    vb = pack_lanes(dev)
    res = fit_em(
        random_hmm(12, 6, seed=0),
        pack_lanes(seqs),
        vb,
        max_iter=40,
        tol=0.0,
        patience=2,
        smoothing=0.0,
        progress=False,
    )
    hist = res.monitor.history
    vals = [r.dev_log_likelihood for r in hist]
    assert log_likelihood(res.hmm, vb)[0] == pytest.approx(max(vals), abs=1e-6)
    assert res.best_iteration == int(np.argmax(vals))


def test_stop_rule_reads_dev_gain_and_patience():
    seqs, _ = sample(true_hmm(), 400, 40, seed=6)
    dev, _ = sample(true_hmm(), 80, 40, seed=7)
    start = random_hmm(3, 6, seed=0, dtype=torch.float64)
    tight = fit_em(
        start,
        pack_lanes(seqs),
        pack_lanes(dev),
        max_iter=500,
        tol=1e-6,
        patience=3,
        smoothing=0.0,
        progress=False,
    )
    loose = fit_em(
        start,
        pack_lanes(seqs),
        pack_lanes(dev),
        max_iter=500,
        tol=1e-2,
        patience=3,
        smoothing=0.0,
        progress=False,
    )
    capped = fit_em(
        start,
        pack_lanes(seqs),
        pack_lanes(dev),
        max_iter=4,
        tol=1e-6,
        smoothing=0.0,
        progress=False,
    )
    assert tight.stop_reason == loose.stop_reason == "converged"
    assert capped.stop_reason == "max_iters" and capped.iterations == 4
    assert loose.iterations < tight.iterations < 500
    # the last `patience` dev gains over the best were all below tol
    hist = tight.monitor.history
    n = hist[-1].dev_tokens
    best = max(r.dev_log_likelihood for r in hist[:-3])
    for r in hist[-3:]:
        assert (r.dev_log_likelihood - best) / n < 1e-6
        best = max(best, r.dev_log_likelihood)


def test_online_em_learns_faster_per_pass_than_batch_em():
    from hmm_lang.hmm.online import fit_online, minibatches

    truth = true_hmm()
    seqs, _ = sample(truth, 1000, 50, seed=4)
    held, _ = sample(truth, 200, 50, seed=5)
    vb = pack_lanes(held)
    start = random_hmm(3, 6, seed=0, dtype=torch.float64)
    online, mon = fit_online(
        start,
        minibatches(seqs, 20, seed=0, epochs=10),
        corpus_tokens=50_000,
        alpha=0.6,
        smoothing=0.0,
        valid=vb,
        eval_every=50,
    )
    assert len(mon.history) == 500
    assert sum(r.dev_log_likelihood is not None for r in mon.history) == 10
    ll_on, n = log_likelihood(online, vb)
    ll_start, _ = log_likelihood(start, vb)
    batch10 = fit_em(start, pack_lanes(seqs), max_iter=10, tol=0.0, smoothing=0.0, progress=False)
    batch60 = fit_em(start, pack_lanes(seqs), max_iter=60, tol=0.0, smoothing=0.0, progress=False)
    assert ll_on > ll_start + 0.1 * n  # it learned
    assert ll_on > log_likelihood(batch10.hmm, vb)[0]  # ten passes: online ahead of batch
    assert (log_likelihood(batch60.hmm, vb)[0] - ll_on) / n < 0.06  # and near converged batch


def test_split_start_shares_emissions_across_copies():
    from hmm_lang.hmm.init import SPLIT_COPIES

    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 30, size=40) for _ in range(100)]
    hmm = initial_hmm("split", seqs, 8, 30, seed=0)
    emit = hmm.emit.double()
    # 8 states = 2 clusters x 4 copies: copies of a cluster emit the same tokens
    support = (emit > 1e-2).to(torch.int64)
    assert SPLIT_COPIES == 4 and len({tuple(r.tolist()) for r in support}) == 2
    assert not torch.allclose(hmm.trans[0], hmm.trans[2])  # the copies are not identical


def test_lvd_counts_give_the_empirical_hmm():
    from hmm_lang.hmm.lvd import counts_hmm

    states = [np.array([0, 1, 1, 0]), np.array([1, 0])]
    tokens = [np.array([2, 0, 1, 2]), np.array([0, 2])]
    hmm = counts_hmm(states, tokens, 2, 3, pseudocount=0.0)
    torch.testing.assert_close(hmm.start, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(hmm.trans, torch.tensor([[0.0, 1.0], [2 / 3, 1 / 3]]))
    torch.testing.assert_close(hmm.emit, torch.tensor([[0.0, 0.0, 1.0], [2 / 3, 1 / 3, 0.0]]))
