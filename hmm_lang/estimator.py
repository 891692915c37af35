"""``hmm_lang.CategoricalHMM``: hmmlearn's estimator interface on hmm_lang's batched engine.

For users of hmmlearn: the same constructor arguments and attributes (``startprob_``,
``transmat_``, ``emissionprob_``, ``monitor_``), the same ``X`` of shape (n_samples, 1) with
``lengths``, the same methods (``fit``, ``score``, ``score_samples``, ``predict``,
``predict_proba``, ``decode``, ``sample``, ``aic``, ``bic``). Underneath, EM runs on packed
lanes (:mod:`hmm_lang.hmm.batching`), tens of times faster on long data. Unlike
:func:`hmm_lang.fit_hmm`, this follows hmmlearn's protocol: EM on all of ``X`` until the
training log-likelihood gains less than ``tol`` (nats, total), no dev split.
"""

from __future__ import annotations

import numpy as np
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm import inference
from hmm_lang.hmm.batching import check_sequences, pack_lanes
from hmm_lang.hmm.em import e_step, m_step
from hmm_lang.hmm.model import CategoricalHMM as _Params
from hmm_lang.hmm.model import random_hmm


class _Monitor:
    """hmmlearn's ConvergenceMonitor: ``history`` of log-likelihoods, ``iter``, ``converged``."""

    def __init__(self, tol: float, n_iter: int):
        self.tol, self.n_iter = tol, n_iter
        self.history: list[float] = []
        self.iter = 0

    @property
    def converged(self) -> bool:
        return self.iter == self.n_iter or (
            len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol
        )


class CategoricalHMM:
    """Categorical-emission HMM with hmmlearn's interface (see the module docstring).

    ``init_params`` / ``params`` are strings of ``s`` (start), ``t`` (transitions), ``e``
    (emissions): which parameters ``fit`` initialises and which EM updates."""

    def __init__(
        self,
        n_components: int = 1,
        n_features: int | None = None,
        n_iter: int = 10,
        tol: float = 1e-2,
        random_state: int | None = None,
        params: str = "ste",
        init_params: str = "ste",
        verbose: bool = False,
    ):
        self.n_components, self.n_features = n_components, n_features
        self.n_iter, self.tol, self.random_state = n_iter, tol, random_state
        self.params, self.init_params, self.verbose = params, init_params, verbose
        self.monitor_ = _Monitor(tol, n_iter)

    # ---- data ------------------------------------------------------------------------------
    def _split(self, X, lengths=None) -> list[np.ndarray]:
        x = np.asarray(X)
        if x.ndim != 2 or x.shape[1] != 1:
            raise HmmLangError(f"X must have shape (n_samples, 1), got {x.shape}")
        if not np.issubdtype(x.dtype, np.integer):
            raise HmmLangError("X must hold integer symbols 0 .. n_features - 1")
        x = x[:, 0].astype(np.int64)
        lengths = [len(x)] if lengths is None else list(lengths)
        if sum(lengths) != len(x):
            raise HmmLangError(f"lengths sum to {sum(lengths)} but X has {len(x)} samples")
        return np.split(x, np.cumsum(lengths)[:-1])

    def _model(self) -> _Params:
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        return _Params(t(self.startprob_), t(self.transmat_), t(self.emissionprob_))

    def _set(self, m: _Params) -> None:
        self.startprob_ = m.start.double().numpy().copy()
        self.transmat_ = m.trans.double().numpy().copy()
        self.emissionprob_ = m.emit.double().numpy().copy()

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, X, lengths=None) -> CategoricalHMM:
        seqs = self._split(X, lengths)
        v = self.n_features or int(max(s.max() for s in seqs)) + 1
        self.n_features = v
        check_sequences(seqs, v)
        init = random_hmm(self.n_components, v, seed=self.random_state or 0, dtype=torch.float64)
        for key, attr, val in (
            ("s", "startprob_", init.start),
            ("t", "transmat_", init.trans),
            ("e", "emissionprob_", init.emit),
        ):
            if key in self.init_params or not hasattr(self, attr):
                setattr(self, attr, val.numpy().copy())
        model = self._model().validate()
        batches = pack_lanes(seqs)
        self.monitor_ = _Monitor(self.tol, self.n_iter)
        for it in range(self.n_iter):
            stats = e_step(model, batches)
            self.monitor_.history.append(stats.log_likelihood)
            self.monitor_.iter = it + 1
            new = m_step(stats, 0.0, dtype=torch.float64)
            model = _Params(
                new.start if "s" in self.params else model.start,
                new.trans if "t" in self.params else model.trans,
                new.emit if "e" in self.params else model.emit,
            )
            if self.monitor_.converged:
                break
        self._set(model)
        return self

    # ---- inference -------------------------------------------------------------------------
    def score(self, X, lengths=None) -> float:
        """Log-likelihood of X (nats)."""
        seqs = self._split(X, lengths)
        return float(inference.log_likelihood(self._model(), pack_lanes(seqs))[0])

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """(n_samples, n_components) posteriors P(s_t | the whole sequence)."""
        model = self._model()
        out = []
        for s in self._split(X, lengths):
            out.append(inference.posteriors(model, pack_lanes([s])[0])[0, : len(s)].numpy())
        return np.concatenate(out)

    def score_samples(self, X, lengths=None) -> tuple[float, np.ndarray]:
        return self.score(X, lengths), self.predict_proba(X, lengths)

    def decode(self, X, lengths=None, algorithm: str = "viterbi") -> tuple[float, np.ndarray]:
        """(log-probability of the best paths, the Viterbi state sequence)."""
        if algorithm != "viterbi":
            raise HmmLangError(f"only the viterbi algorithm is implemented, not {algorithm!r}")
        model, total, path = self._model(), 0.0, []
        for s in self._split(X, lengths):
            p, lp = inference.viterbi(model, s)
            total += lp
            path.append(p)
        return total, np.concatenate(path)

    def predict(self, X, lengths=None) -> np.ndarray:
        return self.decode(X, lengths)[1]

    def sample(self, n_samples: int = 1, random_state: int | None = None):
        """(X of shape (n_samples, 1), state sequence), one sequence."""
        seed = self.random_state if random_state is None else random_state
        xs, zs = inference.sample(self._model(), 1, n_samples, seed=seed or 0)
        return np.asarray(xs[0]).reshape(-1, 1), np.asarray(zs[0])

    # ---- model selection -------------------------------------------------------------------
    def _n_parameters(self) -> int:
        k, v = self.n_components, self.n_features
        return (k - 1) + k * (k - 1) + k * (v - 1)

    def aic(self, X, lengths=None) -> float:
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()

    def bic(self, X, lengths=None) -> float:
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(len(np.asarray(X)))
