"""Convergence monitor for EM: keeps the history, warns when the objective goes down."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)


@dataclass
class IterationRecord:
    iteration: int
    log_likelihood: float  # nats on the training data, under the parameters before the M-step
    log_prior: float  # Dirichlet log prior (up to a constant) of those parameters
    n_tokens: int
    seconds: float
    valid_log_likelihood: float | None = None  # nats on validation data, if given
    valid_tokens: int | None = None

    @property
    def objective(self) -> float:
        """What MAP-EM never decreases: log-likelihood plus log prior."""
        return self.log_likelihood + self.log_prior

    @property
    def train_nats_per_token(self) -> float:
        return -self.log_likelihood / self.n_tokens


class ConvergenceMonitor:
    """Stops when the objective improves by less than ``tol`` nats per token.

    A decrease larger than ``decrease_tol`` (relative to the objective's size) means a bug or
    float trouble: it is logged as a warning and counted in ``n_decreases``.
    """

    def __init__(self, tol: float = 1e-4, max_iter: int = 20, decrease_tol: float = 1e-6):
        self.tol, self.max_iter, self.decrease_tol = tol, max_iter, decrease_tol
        self.history: list[IterationRecord] = []
        self.n_decreases = 0

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
        self.history.append(record)
        log.debug("iteration %d: %.5f nats/token", record.iteration, record.train_nats_per_token)

    @property
    def converged(self) -> bool:
        if len(self.history) >= self.max_iter:
            return True
        if len(self.history) < 2:
            return False
        a, b = self.history[-2], self.history[-1]
        return (b.objective - a.objective) / b.n_tokens < self.tol

    def as_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.history]
