"""Blocked-emission HMMs against the dense HMM they equal, brute-force enumeration, EM
monotonicity, sampling frequencies and the clusterings."""

import math

import numpy as np
import pytest
import torch

from hmm_lang.hmm.batching import pack_lanes
from hmm_lang.hmm.blocked import BlockedHMM, BlockedStats
from hmm_lang.hmm.blocked_init import init_blocked_hmm
from hmm_lang.hmm.clusters import class_bigram_objective, context_clusters, exchange_clusters
from hmm_lang.hmm.inference import log_likelihood, posteriors, viterbi
from tests.test_hmm_inference import best_path_brute, brute_force

CLUSTER = np.array([0, 0, 1, 1, 1, 2])  # V = 6 tokens in M = 3 clusters; token 5 is </s>


def small_model(seed=0, n=2, escape=0.05) -> BlockedHMM:
    """A blocked HMM whose training text leaves cluster pairs unseen (so the escape matters)."""
    rng = np.random.default_rng(seed)
    seqs = [np.array([0, 2, 3, 1, 4, 5]), np.array([1, 3, 3, 0, 5]), np.array([2, 4, 0, 5])]
    model = init_blocked_hmm(seqs, 6, CLUSTER, n, escape=escape, seed=seed, eos_id=5)
    model = model.m_step(  # random parameters on the seen structure
        BlockedStats(
            torch.from_numpy(rng.random(model.blocks.shape)),
            torch.from_numpy(rng.random(model.start.shape)),
            torch.from_numpy(rng.random(model.emit.shape)),
            0.0,
            0,
        ),
        smoothing=0.1,
    )
    return BlockedHMM(
        *(t.double() if t.is_floating_point() else t for t in (
            model.cluster, model.pairs, model.blocks, model.start, model.emit,
            model.escape_next, model.escape_first,
        )),
        model.escape,
        model.escape_parameters,
    )  # fmt: skip


def test_dense_view_is_a_proper_hmm_with_zero_emissions_outside_the_cluster():
    model = small_model()
    dense = model.to_dense().validate(atol=1e-9)
    state_cluster = torch.arange(dense.n_states) // model.block_size
    allowed = state_cluster[:, None] == torch.from_numpy(CLUSTER)[None, :]
    assert torch.all(dense.emit[~allowed] == 0)
    assert model.n_states == 6 and model.vocab_size == 6


@pytest.mark.parametrize(
    "seed, x", [(0, [0, 2, 4, 1]), (1, [4, 4, 0, 5]), (2, [5, 1, 3]), (3, [2])]
)
def test_blocked_equals_dense_and_enumeration(seed, x):
    model = small_model(seed)
    dense = model.to_dense()
    x = np.array(x)
    batch = pack_lanes([x])[0]
    ll, _ = model.log_likelihood([batch])
    logp, gamma, _ = brute_force(dense, x)
    assert math.isclose(ll, logp, rel_tol=1e-9)
    assert math.isclose(log_likelihood(dense, [batch])[0], logp, rel_tol=1e-9)
    # posteriors over the cluster's states = the dense posteriors on those states
    post = model.posteriors(batch)[0].double().numpy()  # (T, n)
    n = model.block_size
    for t, tok in enumerate(x):
        c = CLUSTER[tok]
        np.testing.assert_allclose(post[t], gamma[t, c * n : (c + 1) * n], atol=1e-6)
        assert gamma[t].sum() == pytest.approx(gamma[t, c * n : (c + 1) * n].sum())
    np.testing.assert_allclose(
        post,
        posteriors(dense, batch)[0]
        .numpy()[:, :]
        .reshape(len(x), -1)[np.arange(len(x))[:, None], CLUSTER[x][:, None] * n + np.arange(n)],
        atol=1e-6,
    )
    # Viterbi: the same path as the dense model and as enumeration
    path, lp = model.viterbi(x)
    full = CLUSTER[x] * n + path
    assert full.tolist() == best_path_brute(dense, x)
    dpath, dlp = viterbi(dense, x)
    assert full.tolist() == dpath.tolist() and lp == pytest.approx(dlp)


def test_expected_counts_match_enumeration():
    """Block, start and emission counts against every state path, each transition split into
    its block part (1 - e) T and its escape part e r / n."""
    import itertools

    model = small_model(4)
    dense = model.to_dense()
    s0, a_full, b_full = (t.numpy() for t in dense.tensors())
    x = np.array([0, 2, 4, 1, 3])
    n, m, eps = model.block_size, model.n_clusters, model.escape
    stats = model.expected_counts(pack_lanes([x])[0])
    blocks = np.zeros(stats.blocks.shape)
    start = np.zeros(stats.start.shape)
    emit = np.zeros(stats.emit.shape)
    pos = model.position.numpy()
    total = 0.0
    pairs = model.pairs.tolist()
    for path in itertools.product(range(m * n), repeat=len(x)):
        p = s0[path[0]] * np.prod([b_full[path[t], x[t]] for t in range(len(x))])
        p *= np.prod([a_full[path[t - 1], path[t]] for t in range(1, len(x))])
        if p == 0:
            continue
        total += p
        c0, i0 = divmod(path[0], n)
        start[c0, i0] += p * (1 - eps) * float(model.start[c0, i0]) / s0[path[0]]
        for t in range(len(x)):
            c, i = divmod(path[t], n)
            emit[c, i, pos[x[t]]] += p
        for t in range(1, len(x)):
            (ca, i), (cb, j) = divmod(path[t - 1], n), divmod(path[t], n)
            if ca * m + cb in pairs:
                k = pairs.index(ca * m + cb)
                part = (1 - eps) * float(model.blocks[k, i, j]) / a_full[path[t - 1], path[t]]
                blocks[k, i, j] += p * part
    np.testing.assert_allclose(stats.blocks.numpy(), blocks / total, atol=1e-9)
    np.testing.assert_allclose(stats.start.numpy(), start / total, atol=1e-9)
    np.testing.assert_allclose(stats.emit.numpy(), emit / total, atol=1e-9)
    assert stats.log_likelihood == pytest.approx(math.log(total))


def test_em_never_decreases_the_map_objective():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 5, size=rng.integers(3, 9)).tolist() + [5] for _ in range(40)]
    seqs = [np.array(s) for s in seqs]
    model = init_blocked_hmm(seqs, 6, CLUSTER, 3, escape=0.01, seed=1, eos_id=5)
    batches = pack_lanes(seqs, 64, 16)
    prev = -math.inf
    for _ in range(8):
        stats = batches and model.expected_counts(batches[0])
        for b in batches[1:]:
            stats.add_(model.expected_counts(b))
        objective = stats.log_likelihood + model.log_prior(0.01)
        assert objective >= prev - 1e-6
        prev = objective
        model = model.m_step(stats, 0.01)


def test_samples_follow_the_model():
    model = small_model(5)
    dense = model.to_dense()
    seqs = model.sample(20000, 2, seed=0)
    firsts = np.bincount([s[0] for s in seqs], minlength=6) / len(seqs)
    p_first = (dense.start[:, None] * dense.emit).sum(0).numpy()
    np.testing.assert_allclose(firsts, p_first, atol=0.015)
    pairs = np.zeros((6, 6))
    for s in seqs:
        if len(s) == 2:
            pairs[s[0], s[1]] += 1
    pairs /= len(seqs)
    joint = ((dense.start[:, None] * dense.emit).T @ dense.trans @ dense.emit).numpy()
    np.testing.assert_allclose(pairs, joint, atol=0.01)


def synthetic_classes(seed=0, n=4000):
    """Tokens 0..11 in 3 true classes; the class sequence is a cycle, so context separates them."""
    rng = np.random.default_rng(seed)
    classes = np.arange(12) // 4
    seq = []
    c = 0
    for _ in range(n):
        seq.append(int(rng.integers(0, 4)) + 4 * c)
        c = (c + 1 + (rng.random() < 0.1)) % 3
    return [np.array(seq[i : i + 50]) for i in range(0, n, 50)], classes


def test_exchange_recovers_classes_and_improves_the_objective():
    seqs, classes = synthetic_classes()
    ctx = context_clusters(seqs, 12, 3, seed=2)
    ex = exchange_clusters(seqs, 12, 3, seed=2)
    assert class_bigram_objective(seqs, ex, 3) >= class_bigram_objective(seqs, ctx, 3) - 1e-6
    # the same partition as the true classes, up to relabelling
    pairs = {(int(a), int(b)) for a, b in zip(ex, classes, strict=True)}
    assert len(pairs) == 3
    assert np.bincount(ex, minlength=3).min() >= 1


def _exact_log_likelihood(lb, ls, le, model: BlockedHMM, x) -> torch.Tensor:
    """log P(x) as a differentiable function of the log tables (autograd through time)."""
    n, eps = model.block_size, model.escape
    cl = model.cluster[torch.as_tensor(x)]
    pos = model.position[torch.as_tensor(x)]
    r_first = model.escape_first.double()
    alpha = ((1 - eps) * ls[cl[0]].exp() + eps * r_first[cl[0]] / n) * le[cl[0], :, pos[0]].exp()
    total = torch.log(alpha.sum())
    alpha = alpha / alpha.sum()
    for t in range(1, len(x)):
        a, b = int(cl[t - 1]), int(cl[t])
        pid = int(model.pair_ids(cl[t - 1 : t], cl[t : t + 1])[0])
        blk = lb[pid].exp() if pid < len(model.pairs) else torch.zeros(n, n, dtype=lb.dtype)
        e = float(model.escape_of(cl[t - 1 : t])[0])
        step = (1 - e) * alpha @ blk + e * float(model.escape_next[a, b]) / n
        alpha = step * le[b, :, pos[t]].exp()
        total = total + torch.log(alpha.sum())
        alpha = alpha / alpha.sum()
    return total


@pytest.mark.parametrize("dropout", [False, True])
def test_fisher_identity_gradient_equals_expected_counts(dropout):
    """d log P(x) / d theta (autograd through time) = the expected counts pushed through the
    parameterisation (the surrogate's gradient), with and without dropped states."""
    from hmm_lang.hmm.blocked_grad import BlockedParameterisation, _keep

    template = small_model(6, n=3)
    params = BlockedParameterisation(template, dim=8, seed=0).double()
    keep = _keep(3, 3, 0.34, torch.Generator().manual_seed(1)) if dropout else None
    x = [0, 2, 4, 1, 3, 5]
    model = params.model(keep)
    lb, ls, le = params.log_tables(keep)
    exact = _exact_log_likelihood(lb, ls, le, model, x)
    grads = torch.autograd.grad(exact, list(params.parameters()), allow_unused=True)
    stats = model.expected_counts(pack_lanes([np.array(x)])[0])
    assert stats.log_likelihood == pytest.approx(float(exact.detach()), rel=1e-9)
    sur = torch.autograd.grad(
        params.surrogate(stats, keep), list(params.parameters()), allow_unused=True
    )
    for g_exact, g_sur in zip(grads, sur, strict=True):
        if g_exact is None:
            assert g_sur is None or torch.all(g_sur == 0)
            continue
        torch.testing.assert_close(-g_sur, g_exact, rtol=1e-6, atol=1e-9)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
