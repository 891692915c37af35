"""Convergence monitor for EM: the train/dev curves, the stop rule and the stop reason.

Stopping reads the dev split only (stories carved from the training data): EM stops once the
dev log-likelihood has improved on its best by less than ``tol`` nats per token for
``patience`` evaluations in a row, or after ``max_iters`` iterations. The training objective
(log-likelihood plus log prior), which MAP-EM never decreases, is checked as a correctness
test: a decrease is logged and counted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

STOP_CONVERGED = "converged"  # dev gain below tol for `patience` evaluations
STOP_MAX_ITERS = "max_iters"  # the iteration cap came first
STOP_NO_DEV = "max_iters_no_dev"  # no dev split: ran max_iters (or stopped on the train objective)


@dataclass
class IterationRecord:
    iteration: int
    log_likelihood: float  # nats on the training data, under the parameters before the M-step
    log_prior: float  # Dirichlet log prior (up to a constant) of those parameters
    n_tokens: int
    seconds: float
    dev_log_likelihood: float | None = None  # nats on the dev split, same parameters
    dev_tokens: int | None = None

    @property
    def objective(self) -> float:
        """What MAP-EM never decreases: log-likelihood plus log prior."""
        return self.log_likelihood + self.log_prior

    @property
    def train_nats_per_token(self) -> float:
        return -self.log_likelihood / self.n_tokens

    @property
    def dev_nats_per_token(self) -> float | None:
        if self.dev_log_likelihood is None or not self.dev_tokens:
            return None
        return -self.dev_log_likelihood / self.dev_tokens


class ConvergenceMonitor:
    """Keeps the history; decides when to stop and which iteration was best on dev."""

    def __init__(
        self,
        tol: float = 1e-4,
        max_iter: int = 200,
        patience: int = 3,
        decrease_tol: float = 1e-6,
    ):
        self.tol, self.max_iter, self.patience = tol, max_iter, patience
        self.decrease_tol = decrease_tol
        self.history: list[IterationRecord] = []
        self.n_decreases = 0
        self.best_iteration: int | None = None  # index into history, by dev likelihood
        self.stale = 0  # evaluations in a row without a gain of tol on the best

    @property
    def best_dev(self) -> float:
        if self.best_iteration is None:
            return -float("inf")
        return self.history[self.best_iteration].dev_log_likelihood

    def report(self, record: IterationRecord) -> None:
        if self.history:
            prev = self.history[-1].objective
            if record.objective < prev - self.decrease_tol * max(1.0, abs(prev)):
                self.n_decreases += 1
                log.warning(
                    "EM objective decreased at iteration %d: %.6f -> %.6f",
                    record.iteration,
                    prev,
                    record.objective,
                )
        if record.dev_log_likelihood is not None:
            gain = (record.dev_log_likelihood - self.best_dev) / max(record.dev_tokens or 1, 1)
            self.stale = self.stale + 1 if gain < self.tol else 0
            if record.dev_log_likelihood > self.best_dev:
                self.best_iteration = len(self.history)
        self.history.append(record)
        log.debug("iteration %d: %.5f nats/token", record.iteration, record.train_nats_per_token)

    @property
    def stop_reason(self) -> str | None:
        """None while EM should go on; else why it stops."""
        has_dev = any(r.dev_log_likelihood is not None for r in self.history)
        if has_dev and self.stale >= self.patience:
            return STOP_CONVERGED
        if not has_dev and len(self.history) >= 2:
            a, b = self.history[-2], self.history[-1]
            if (b.objective - a.objective) / b.n_tokens < self.tol:
                return STOP_CONVERGED
        if len(self.history) >= self.max_iter:
            return STOP_MAX_ITERS if has_dev else STOP_NO_DEV
        return None

    @property
    def converged(self) -> bool:
        return self.stop_reason is not None

    def as_dicts(self) -> list[dict]:
        return [
            asdict(r)
            | {"train_nats_per_token": r.train_nats_per_token}
            | ({"dev_nats_per_token": r.dev_nats_per_token} if r.dev_tokens else {})
            for r in self.history
        ]
