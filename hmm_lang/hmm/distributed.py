"""Data-parallel EM: statistics are sums, so each process takes a shard of the sequences and
the E-step's counts are summed with ``all_reduce`` (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from hmm_lang.hmm.inference import HMMStats


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def shard(items: list, rank: int, world: int) -> list:
    """Every ``world``-th item from ``rank``: balanced when items are shuffled or similar."""
    return items[rank::world]


def all_reduce_stats(stats: HMMStats) -> HMMStats:
    """Sum :class:`HMMStats` over all processes (no-op without a process group)."""
    if not is_distributed():
        return stats
    for t in (stats.start, stats.trans, stats.emit):
        dist.all_reduce(t)
    scalars = torch.tensor(
        [stats.log_likelihood, stats.n_tokens, stats.n_sequences],
        dtype=torch.float64,
        device=stats.start.device,
    )
    dist.all_reduce(scalars)
    stats.log_likelihood = float(scalars[0])
    stats.n_tokens, stats.n_sequences = int(scalars[1]), int(scalars[2])
    return stats


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns True when running distributed (WORLD_SIZE > 1): gloo for CPU tensors, and nccl
    for CUDA tensors where there is a GPU (each local rank on its own device).
    """
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    if torch.cuda.is_available():
        # one GPU per local rank; gloo as well, for statistics kept on the CPU (--device cpu)
        # more processes than GPUs (statistics on the CPU) share them, as train.py does
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")
    return True


def is_main_process() -> bool:
    return rank_and_world()[0] == 0
