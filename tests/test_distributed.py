"""Data-parallel EM over 2 gloo CPU processes equals one process."""

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hmm_lang.hmm.fit import HMMFitConfig, fit_dense
from hmm_lang.pretokenize import TokenStream


def make_stream(seed: int, n: int = 120) -> TokenStream:
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, 40, size=rng.integers(5, 50)) for _ in range(n)]
    for s in seqs:
        s[-1] = 1  # an end-of-story token
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    return TokenStream(
        np.concatenate(seqs).astype(np.uint16), offsets, np.full(n, 100), vocab_size=40, eos_id=1
    )


CFG = HMMFitConfig(states=6, max_iters=4, tol=0.0, patience=99, batch_tokens=512, lane_len=64)


def _worker(rank: int, path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    result = fit_dense(make_stream(0), make_stream(1, 30), CFG)
    if rank == 0:
        torch.save([t for t in result.model.tensors()], out)
    dist.barrier()  # no rank tears gloo down while another is still talking
    dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "pg"), str(tmp_path / "out.pt")), nprocs=2, join=True)
    two = torch.load(tmp_path / "out.pt")
    one = fit_dense(make_stream(0), make_stream(1, 30), CFG).model.tensors()
    for a, b in zip(one, two, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
