"""The categorical-emission HMM: parameters, validation, save and load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hmm_lang.atomic import atomic_path
from hmm_lang.errors import HmmLangError


@dataclass
class CategoricalHMM:
    """K hidden states, V symbols. Rows of every matrix are probability distributions.

    start: (K,)   P(s_1 = k)
    trans: (K, K) P(s_t = j | s_{t-1} = i) at [i, j]
    emit:  (K, V) P(x_t = v | s_t = k)
    """

    start: torch.Tensor
    trans: torch.Tensor
    emit: torch.Tensor

    @property
    def n_states(self) -> int:
        return self.start.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.emit.shape[1]

    @property
    def device(self) -> torch.device:
        return self.start.device

    @property
    def n_parameters(self) -> int:
        """Free parameters: (K-1) + K(K-1) + K(V-1)."""
        k, v = self.n_states, self.vocab_size
        return (k - 1) + k * (k - 1) + k * (v - 1)

    def to(self, device=None, dtype=None) -> CategoricalHMM:
        return CategoricalHMM(*(t.to(device=device, dtype=dtype) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.start, self.trans, self.emit

    def validate(self, atol: float = 1e-4) -> CategoricalHMM:
        """Raise :class:`HmmLangError` on wrong shapes, NaN, negative or unnormalised rows."""
        k = self.start.shape[0] if self.start.dim() == 1 else -1
        if k < 1 or self.trans.shape != (k, k) or self.emit.dim() != 2 or self.emit.shape[0] != k:
            raise HmmLangError(
                f"HMM shapes do not fit: start {tuple(self.start.shape)}, trans "
                f"{tuple(self.trans.shape)}, emit {tuple(self.emit.shape)}; expected (K,), (K,K), (K,V)"
            )
        for name, t in zip(("start", "trans", "emit"), self.tensors(), strict=True):
            if not torch.isfinite(t).all():
                raise HmmLangError(f"HMM parameter {name} holds NaN or infinite values")
            if (t < 0).any():
                raise HmmLangError(f"HMM parameter {name} holds negative probabilities")
            sums = t.sum(-1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=atol):
                raise HmmLangError(f"HMM parameter {name} has rows that do not sum to 1")
        return self

    def save(self, path: str | Path, config: dict | None = None) -> None:
        """Write parameters and ``config`` to one ``.pt`` file, atomically."""
        with atomic_path(path) as tmp:
            torch.save(
                {
                    "kind": "categorical_hmm",
                    "start": self.start.cpu(),
                    "trans": self.trans.cpu(),
                    "emit": self.emit.cpu(),
                    "config": config or {},
                },
                tmp,
            )

    @classmethod
    def load(cls, path: str | Path, map_location="cpu") -> tuple[CategoricalHMM, dict]:
        """Parameters and config saved by :meth:`save`; bad files raise a one-line error."""
        try:
            d = torch.load(path, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise HmmLangError(f"no HMM file at {path}") from None
        except Exception as e:
            raise HmmLangError(
                f"cannot read HMM file {path} ({type(e).__name__}); refit it"
            ) from None
        if not isinstance(d, dict) or d.get("kind") != "categorical_hmm":
            raise HmmLangError(f"{path} is not a saved CategoricalHMM")
        return cls(d["start"], d["trans"], d["emit"]).validate(), d.get("config", {})


def random_hmm(
    n_states: int,
    vocab_size: int,
    seed: int = 0,
    concentration: float = 1.0,
    dtype=torch.float32,
) -> CategoricalHMM:
    """Every row drawn from a symmetric Dirichlet(``concentration``), reproducibly by ``seed``."""
    if n_states < 1:
        raise HmmLangError(f"the number of states must be at least 1, got {n_states}")
    if vocab_size < 1:
        raise HmmLangError(f"the vocab size must be at least 1, got {vocab_size}")
    rng = np.random.default_rng(seed)

    def dirichlet(*shape):
        g = rng.gamma(concentration, size=shape) + 1e-30
        return torch.from_numpy(g / g.sum(-1, keepdims=True)).to(dtype)

    return CategoricalHMM(
        dirichlet(n_states), dirichlet(n_states, n_states), dirichlet(n_states, vocab_size)
    )
