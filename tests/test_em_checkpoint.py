"""EM state saved mid-fit: a killed EM resumes to the parameters of an uninterrupted one."""

import pytest
import torch

from hmm_lang.hmm import log_likelihood, pack_lanes, sample
from hmm_lang.hmm.em import e_step, log_prior, m_step, run_em
from hmm_lang.hmm.model import random_hmm
from tests.test_hmm_em import true_hmm

SMOOTHING = 0.1


def _em(start, batches, dev, checkpoint=None, kill_at=None):
    """Dense EM to dev convergence; KeyboardInterrupt in the ``kill_at``-th E-step."""
    calls = []

    def e(m):
        calls.append(1)
        if len(calls) == kill_at:
            raise KeyboardInterrupt
        return e_step(m, batches)

    res = run_em(
        start,
        e,
        lambda s: m_step(s, SMOOTHING, dtype=torch.float64),
        lambda m: log_likelihood(m, dev),
        lambda m: log_prior(m, SMOOTHING),
        max_iter=40,
        tol=1e-3,
        patience=2,
        progress=False,
        checkpoint=checkpoint,
        checkpoint_every=0.0,
    )
    return res, len(calls)


def _curve(res):
    return [(r["log_likelihood"], r["dev_log_likelihood"]) for r in res.monitor.as_dicts()]


@pytest.fixture(scope="module")
def data():
    seqs, _ = sample(true_hmm(), 200, 40, seed=0)
    dev, _ = sample(true_hmm(), 50, 40, seed=3)
    return pack_lanes(seqs, batch_tokens=2000), pack_lanes(dev)


def test_a_killed_em_resumes_to_the_same_parameters(tmp_path, data):
    start = random_hmm(3, 6, seed=1, dtype=torch.float64)
    whole, n_whole = _em(start, *data)
    assert whole.stop_reason == "converged" and n_whole > 8  # the kill below is mid-EM
    ckpt = tmp_path / "em.pt"
    with pytest.raises(KeyboardInterrupt):
        _em(start, *data, checkpoint=ckpt, kill_at=7)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp"))
    resumed, n_after = _em(start, *data, checkpoint=ckpt)
    assert n_after == n_whole - 6  # six E-steps were kept; the seventh ran again
    for a, b in zip(resumed.hmm.tensors(), whole.hmm.tensors(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(resumed.stats.trans, whole.stats.trans)  # the pseudocount grid reads it
    assert _curve(resumed) == _curve(whole)  # the replayed monitor stops where it would have
    assert (resumed.best_iteration, resumed.stop_reason) == (whole.best_iteration, "converged")
    assert resumed.resumed_seconds > 0 and whole.resumed_seconds == 0


def test_an_unreadable_state_means_a_fresh_start(tmp_path, data, caplog):
    start = random_hmm(3, 6, seed=1, dtype=torch.float64)
    whole, n_whole = _em(start, *data)
    ckpt = tmp_path / "em.pt"
    ckpt.write_bytes(b"PK\x03\x04 cut short")
    res, n = _em(start, *data, checkpoint=ckpt)
    assert n == n_whole and "ignoring unreadable EM state" in caplog.text
    assert torch.equal(res.hmm.trans, whole.hmm.trans)
