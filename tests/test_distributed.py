"""Data-parallel EM over 2 gloo CPU processes equals one process, in the library and on the
command line under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

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


FIT_HMM = ["-m", "hmm_lang.cli", "fit-hmm", "--states", "4", "--iters", "3", "--tol", "0"]
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _fit_hmm_cli(cwd: Path, data: list[str], out: str, torchrun: bool):
    """``hmm-lang fit-hmm`` as a user runs it (under torchrun or not): its run folder and the
    finished process."""
    cmd = [sys.executable, *(TORCHRUN if torchrun else []), *FIT_HMM, *data, "--out-dir", out]
    # --standalone: a local rendezvous on a free port; one thread each for 2 processes; no
    # GPU, so that init_from_env picks gloo for these CPU fits (it picks nccl beside CUDA)
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    runs = list((cwd / out).iterdir())
    assert len(runs) == 1, runs  # one run folder: only rank 0 writes
    return runs[0], proc


def test_fit_hmm_under_torchrun_matches_one_process(tmp_path):
    """The real command line: ``torchrun --nproc_per_node 2 -m hmm_lang.cli fit-hmm`` saves
    the parameters and metrics of the one-process fit (2 shards, counts summed by gloo)."""
    from hmm_lang.corpus import EOT
    from hmm_lang.hmm import CategoricalHMM
    from hmm_lang.synthetic import generate_stories
    from hmm_lang.tokenizer import train_tokenizers

    stories = list(generate_stories(400, seed=0))
    for name, part in (("train.txt", stories[:320]), ("valid.txt", stories[320:])):
        (tmp_path / name).write_text("".join(f"{s}\n{EOT}\n" for s in part), encoding="utf-8")
    tok = train_tokenizers(stories[:320], (300,), tmp_path / "tok")[300]
    data = ["--data", "train.txt", "--valid", "valid.txt", "--tokenizer", str(tok)]
    # torchrun first, on a cold pretokenize cache: both ranks need the streams at once
    two, two_proc = _fit_hmm_cli(tmp_path, data, "two", torchrun=True)
    one, one_proc = _fit_hmm_cli(tmp_path, data, "one", torchrun=False)
    assert two_proc.stderr.count("hmm_lang: corpus:") == 2  # two ranks did run
    assert two_proc.stdout.count("bits/byte") == 1 == one_proc.stdout.count("bits/byte")
    for run in (one, two):
        assert sorted(p.name for p in run.iterdir()) == [
            "config.yaml",
            "environment.json",
            "metrics.json",
            "model.pt",
        ]  # complete: no .incomplete marker, no temporary left by a second writer
    assert yaml.safe_load((one / "config.yaml").read_text()) == yaml.safe_load(
        (two / "config.yaml").read_text()
    )
    hmm1, hmm2 = (CategoricalHMM.load(run / "model.pt")[0] for run in (one, two))
    for a, b in zip(hmm1.tensors(), hmm2.tensors(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)  # float32 sums, other order
    m1, m2 = (json.loads((r / "metrics.json").read_text()) for r in (one, two))
    for key in ("n_tokens", "n_bytes", "n_train_tokens", "n_states", "n_parameters"):
        assert m1[key] == m2[key], key
    for key in ("iterations", "best_iteration", "stop_reason", "scored_on", "choices"):
        assert m1[key] == m2[key], key
    assert m1["iterations"] == 3 and m1["scored_on"] == "valid"
    for key in ("bits_per_byte", "bits_per_token", "nats", "dev_bits_per_byte"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-6), key
    for h1, h2 in zip(m1["history"], m2["history"], strict=True):
        assert h1["n_tokens"] == h2["n_tokens"] and h1["dev_tokens"] == h2["dev_tokens"]
        for key in ("log_likelihood", "dev_log_likelihood", "log_prior"):
            assert h2[key] == pytest.approx(h1[key], rel=1e-6), key
