"""Training's dev split and stop rule: what steers a transformer run, apart from validation.

The dev stories are carved from the training stories with :func:`hmm_lang.devsplit.dev_mask`
(with ``train.dev_seed`` and ``train.dev_fraction`` at their defaults, 0 and 5%, the stories an
HMM fit on the same split carves off with its defaults), removed from the stories the sampler
draws from, and scored at every evaluation. The weights of the best dev evaluation are the
run's final model; the validation split is scored once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hmm_lang.devsplit import dev_mask
from hmm_lang.pretokenize import TokenStream


def carve_dev_stream(
    train: TokenStream, fraction: float, seed: int
) -> tuple[np.ndarray, TokenStream]:
    """(indices of the stories to train on, the dev stories as a stream), in their original
    order. The training stories stay in ``train`` (no copy: see ``BosStream(stories=...)``)."""
    mask = dev_mask(train.n_stories, fraction, seed)
    return np.flatnonzero(~mask), train.select(np.flatnonzero(mask))


@dataclass
class DevStop:
    """The best dev score so far, its weights, and evaluations since it last improved.

    ``update`` after every evaluation; ``converged`` is True once ``patience`` evaluations in a
    row gained less than ``tol`` nats/token on the best (``patience`` None: never). The best
    weights are kept on the CPU."""

    patience: int | None
    tol: float
    best_nats: float = float("inf")
    best_step: int = 0
    since: int = 0
    best_model: dict | None = None  # state_dict of the best evaluation (cloned)

    def update(self, step: int, dev_nats: float, model: torch.nn.Module) -> None:
        if dev_nats < self.best_nats - self.tol:
            self.since = 0
        else:
            self.since += 1
        if dev_nats < self.best_nats:  # the kept weights are the best, gain or no gain
            self.best_nats, self.best_step = dev_nats, step
            self.best_model = {
                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            }

    @property
    def converged(self) -> bool:
        return self.patience is not None and self.since >= self.patience

    def state_dict(self) -> dict:
        return {
            "best_nats": self.best_nats,
            "best_step": self.best_step,
            "since": self.since,
            "best_model": self.best_model,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best_nats = float(state["best_nats"])
        self.best_step = int(state["best_step"])
        self.since = int(state["since"])
        self.best_model = state["best_model"]
