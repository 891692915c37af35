"""What this machine can do: the anchor rate the benchmarks divide by."""

from __future__ import annotations

import time

import torch


def matmul_flops(sizes=(1024, 2048, 4096), reps: int = 5) -> float:
    """The best float32 matmul rate over a few square sizes (FLOP/s)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best
