"""hmm_lang.CategoricalHMM against hmmlearn's CategoricalHMM on the same parameters and data."""

import numpy as np
import pytest

hmmlearn = pytest.importorskip("hmmlearn.hmm")


def _pair(seed=0, k=3, v=5):
    from hmm_lang import CategoricalHMM

    rng = np.random.default_rng(seed)
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    emit = rng.dirichlet(np.ones(v), size=k)
    ours = CategoricalHMM(n_components=k, n_features=v, n_iter=5, tol=-np.inf, init_params="")
    theirs = hmmlearn.CategoricalHMM(
        n_components=k, n_features=v, n_iter=5, tol=-np.inf, init_params=""
    )
    for m in (ours, theirs):
        m.startprob_, m.transmat_, m.emissionprob_ = start.copy(), trans.copy(), emit.copy()
    x = rng.integers(0, v, size=(60, 1))
    return ours, theirs, x, [25, 35]


def test_inference_matches_hmmlearn():
    ours, theirs, x, lengths = _pair()
    assert ours.score(x, lengths) == pytest.approx(theirs.score(x, lengths), rel=1e-10)
    np.testing.assert_allclose(
        ours.predict_proba(x, lengths), theirs.predict_proba(x, lengths), atol=1e-10
    )
    lp, path = ours.decode(x, lengths)
    tlp, tpath = theirs.decode(x, lengths)
    assert lp == pytest.approx(tlp) and np.array_equal(path, tpath)
    assert np.array_equal(ours.predict(x, lengths), tpath)
    assert ours.bic(x, lengths) == pytest.approx(theirs.bic(x, lengths))
    assert ours.aic(x, lengths) == pytest.approx(theirs.aic(x, lengths))


def test_em_matches_hmmlearn():
    ours, theirs, x, lengths = _pair(1)
    ours.fit(x, lengths)
    theirs.fit(x, lengths)
    np.testing.assert_allclose(ours.monitor_.history, theirs.monitor_.history, rtol=1e-9)
    for a in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_allclose(getattr(ours, a), getattr(theirs, a), atol=1e-9)
    xs, zs = ours.sample(200, random_state=0)
    assert xs.shape == (200, 1) and zs.shape == (200,) and xs.max() < 5
