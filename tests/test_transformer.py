"""Transformer runs: typed config, the notebook's loading code, resume, DDP, bad input."""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from hmm_lang.config import RunConfig, apply_overrides, load_config, load_config_dict
from hmm_lang.errors import HmmLangError
from hmm_lang.runs import load_run
from hmm_lang.tokenizer import hf_dir
from hmm_lang.transformer import HookedTransformerModel
from hmm_lang.transformer.model import fast_attention
from hmm_lang.transformer.train import train

TINY = Path(__file__).parent.parent / "configs" / "tiny.yaml"


def tiny_cfg(tokenizers_dir, **train_overrides) -> RunConfig:
    cfg = load_config(TINY)
    items = [f"data.tokenizer={hf_dir(tokenizers_dir, 1024)}", "data.max_stories=300"]
    items += [f"train.{k}={v}" for k, v in train_overrides.items()]
    return apply_overrides(cfg, items)


def test_config_parsing_and_errors(tmp_path):
    cfg = load_config_dict({"train": {"lr": "3e-4", "steps": "1e3"}, "model": {"d_vocab": None}})
    assert cfg.train.lr == 3e-4 and cfg.train.steps == 1000
    with pytest.raises(HmmLangError, match="unknown config key 'train.learning_rate'"):
        load_config_dict({"train": {"learning_rate": 1}})
    with pytest.raises(HmmLangError, match="'model.n_layers': expected int"):
        load_config_dict({"model": {"n_layers": "two"}})
    with pytest.raises(HmmLangError, match="unknown config key 'colour'"):
        load_config_dict({"colour": 1})
    assert apply_overrides(cfg, ["lr=1e-2", "model.n_ctx=32"]).train.lr == 1e-2
    with pytest.raises(HmmLangError, match="matches sections"):
        apply_overrides(cfg, ["seed=3"])  # model.seed and train.seed
    with pytest.raises(HmmLangError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    for name in ("tiny", "cpu_small", "gpu_base"):
        load_config(TINY.parent / f"{name}.yaml")  # every shipped config parses


def test_original_notebook_code_runs_unchanged(tmp_path):
    cfg = RunConfig()
    cfg.model.d_vocab, cfg.model.n_ctx = 300, 32
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    src = HookedTransformerModel(tmp_path / "config.yaml")
    torch.save(src.state_dict(), tmp_path / "final_model.pt")
    device = "cpu"
    model = HookedTransformerModel(tmp_path / "config.yaml")
    model.load_state_dict(torch.load(tmp_path / "final_model.pt", map_location=device))
    model.eval()
    assert model.model.embed.W_E.shape == (300, 128)
    assert model.model.W_U.shape == (128, 300)
    for name in ("W_Q", "W_K", "W_V"):
        assert getattr(model.model.blocks[0].attn, name).shape == (4, 128, 32)
    assert model.model.blocks[0].attn.W_O.shape == (4, 32, 128)
    tokens = torch.randint(0, 300, (2, 20))
    logits, cache = model.model.run_with_cache(tokens)
    assert cache["blocks.1.hook_resid_post"].shape == (2, 20, 128)
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 4, 20, 20)
    torch.testing.assert_close(logits, src(tokens))
    with fast_attention(model.native):
        torch.testing.assert_close(model.native(tokens), logits, rtol=1e-5, atol=1e-5)


def test_train_writes_a_self_describing_run(tmp_path, tokenizers_dir):
    run = train(tiny_cfg(tokenizers_dir), tmp_path, progress=False)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["d_vocab"] == 1024
    assert (run / "tokenizer" / "tokenizer.json").exists() and (run / "environment.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_0000010.pt",
        "step_0000020.pt",
    ]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "dev_bits_per_byte" in m]
    assert [m["step"] for m in evals] == [10, 20]
    assert evals[-1]["dev_nats_per_token"] < evals[0]["dev_nats_per_token"]
    # validation is read once, at the end, with the best dev evaluation's weights
    (final,) = [m for m in metrics if "valid_bits_per_byte" in m]
    assert final["final"] and final["stop_reason"] == "max_steps" and final["best_step"] == 20
    loaded = load_run(run)
    assert loaded.config.model.d_vocab == 1024 and loaded.valid_metrics == [final]
    assert not loaded.model.training
    ck = torch.load(run / "checkpoints" / "step_0000010.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "step", "rng", "sampler", "config"} <= set(ck)


def test_weights_do_not_depend_on_the_validation_split(tmp_path, tokenizers_dir):
    """Every choice reads the dev split: two runs that differ only in data.valid save the same
    weights (and the dev stories are carved from training, not drawn by the sampler)."""
    texts = {
        "a": "Once upon a time there was a cat. The cat sat.\n<|endoftext|>\n",
        "b": "Tom had a red ball. He lost it. He was sad and cried and cried.\n<|endoftext|>\n"
        "The dog ran home.\n<|endoftext|>\n",
    }
    weights = []
    for name, text in texts.items():
        (tmp_path / f"{name}.txt").write_text(text)
        cfg = apply_overrides(tiny_cfg(tokenizers_dir), [f"data.valid={tmp_path / name}.txt"])
        run = train(cfg, tmp_path / name, progress=False)
        weights.append(torch.load(run / "final_model.pt", weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_dev_stop_ends_training_and_keeps_the_best_weights(tmp_path, tokenizers_dir):
    # tol larger than any gain: the second evaluation counts as no gain, patience 1 stops there
    run = train(tiny_cfg(tokenizers_dir, steps=40, patience=1, tol=10.0), tmp_path, progress=False)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    dev = [m for m in metrics if "dev_nats_per_token" in m]
    assert [m["step"] for m in dev] == [10, 20]
    final = metrics[-1]
    assert final["stop_reason"] == "converged" and final["step"] == 20
    best = min(dev, key=lambda m: m["dev_nats_per_token"])
    assert final["best_step"] == best["step"]
    ck = torch.load(run / "checkpoints" / f"step_{best['step']:07d}.pt", weights_only=True)
    kept = torch.load(run / "final_model.pt", weights_only=True)
    assert all(torch.equal(ck["model"][k], kept[k]) for k in kept)
    with pytest.raises(HmmLangError, match="train.patience"):
        tiny_cfg(tokenizers_dir, patience=0).validate()
    with pytest.raises(HmmLangError, match="train.dev_fraction"):
        tiny_cfg(tokenizers_dir, dev_fraction=1.0).validate()


def test_resume_after_the_best_eval_keeps_the_best_weights(tmp_path, tokenizers_dir):
    """Killed after the best evaluation, before the stop: the kept weights come back from the
    checkpoint, and the validation score is written once."""
    over = dict(steps=40, patience=2, tol=10.0)
    full = train(tiny_cfg(tokenizers_dir, **over), tmp_path / "a", progress=False)
    part = train(tiny_cfg(tokenizers_dir, **over), tmp_path / "b", stop_after=20, progress=False)
    train(resume=part, progress=False)
    train(resume=part, progress=False)  # a finished run resumed again: no second final record
    a = torch.load(full / "final_model.pt", weights_only=True)
    b = torch.load(part / "final_model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    metrics = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    finals = [m for m in metrics if m.get("final")]
    assert len(finals) == 1 and finals[0]["stop_reason"] == "converged" and finals[0]["step"] == 30


def test_resume_equals_uninterrupted(tmp_path, tokenizers_dir):
    full = train(tiny_cfg(tokenizers_dir), tmp_path / "a", progress=False)
    part = train(tiny_cfg(tokenizers_dir), tmp_path / "b", stop_after=10, progress=False)
    assert not (part / "final_model.pt").exists()
    train(resume=part, progress=False)
    a = torch.load(full / "final_model.pt", weights_only=True)
    b = torch.load(part / "final_model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    steps = [json.loads(x)["step"] for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set((s, i) for i, s in enumerate(steps)))


def test_resume_refuses_a_changed_corpus_or_config(tmp_path, tokenizers_dir):
    from hmm_lang.synthetic import generate_stories

    data = tmp_path / "stories.txt"
    stories = list(generate_stories(300, seed=0))
    data.write_text("".join(s + "\n<|endoftext|>\n" for s in stories))
    cfg = apply_overrides(tiny_cfg(tokenizers_dir), [f"data.data={data}"])
    part = train(cfg, tmp_path / "r", stop_after=10, progress=False)
    assert set(json.loads((part / "inputs.json").read_text())) == {
        "train_tokens",
        "valid_tokens",
        "tokenizer",
    }
    data.write_text("".join(s + "\n<|endoftext|>\n" for s in generate_stories(300, seed=1)))
    with pytest.raises(HmmLangError, match="training stories, validation stories changed"):
        train(resume=part, progress=False)
    data.write_text("".join(s + "\n<|endoftext|>\n" for s in stories))
    edited = yaml.safe_load((part / "config.yaml").read_text())
    edited["train"]["lr"] = 0.5
    (part / "config.yaml").write_text(yaml.safe_dump(edited))
    with pytest.raises(HmmLangError, match=r"config.yaml was edited .*train.lr"):
        train(resume=part, progress=False)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_ctx=0", "model.n_ctx must be at least"),
        ("model.d_model=-3", "model.d_model must be at least 1"),
        ("model.act_fn=swish", "unknown model.act_fn"),
        ("train.eval_interval=0", "train.eval_interval must be at least 1"),
        ("train.lr=nan", "train.lr must be a positive number"),
        ("train.lr=-1", "train.lr must be a positive number"),
        ("train.device=cuda", "no CUDA device"),
        ("train.batch_tokens=1000000000", "one training step .* needs about"),
    ],
)
def test_bad_config_values_fail_before_a_run_folder(tmp_path, tokenizers_dir, override, message):
    if override == "train.device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = apply_overrides(tiny_cfg(tokenizers_dir), [override])
    with pytest.raises(HmmLangError, match=message):
        train(cfg, tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_inputs(tmp_path, tokenizers_dir):
    part = train(tiny_cfg(tokenizers_dir), tmp_path / "r", stop_after=10, progress=False)
    ck = part / "checkpoints" / "step_0000010.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    with pytest.raises(HmmLangError, match="truncated or corrupt"):
        train(resume=part, progress=False)
    cfg = yaml.safe_load((part / "config.yaml").read_text())
    cfg["model"]["d_vocab"] = 2048
    (part / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(HmmLangError, match="vocab size is 2048 but the tokenizer's is 1024"):
        train(resume=part, progress=False)
    with pytest.raises(HmmLangError, match="fewer than n_ctx"):
        train(
            apply_overrides(
                tiny_cfg(tokenizers_dir),
                ["data.max_stories=2", "model.n_ctx=4096", "train.batch_tokens=8192"],
            ),
            tmp_path,
            progress=False,
        )
    empty = tmp_path / "empty.txt"
    empty.write_text("<|endoftext|>\n")
    with pytest.raises(HmmLangError, match="no stories"):
        train(
            apply_overrides(tiny_cfg(tokenizers_dir), [f"data.valid={empty}"]),
            tmp_path,
            progress=False,
        )


# the dev-stop rule ends training at step 6 of 12 (tol above any gain, patience 1): every rank
# must stop there together (rank 0 alone evaluates and broadcasts the decision)
DDP_STOP = dict(steps=12, eval_interval=3, checkpoint_interval=3, patience=1, tol=10.0)


def _ddp_worker(rank, pg, tokenizers_dir, out):
    dist.init_process_group("gloo", init_method=f"file://{pg}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    train(
        tiny_cfg(tokenizers_dir, **DDP_STOP),
        out,
        progress=False,
    )
    dist.barrier()  # no rank tears gloo down while another is still talking
    dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path, tokenizers_dir):
    mp.spawn(
        _ddp_worker,
        args=(str(tmp_path / "pg"), tokenizers_dir, tmp_path / "ddp"),
        nprocs=2,
        join=True,
    )
    one = train(
        tiny_cfg(tokenizers_dir, **DDP_STOP),
        tmp_path / "one",
        progress=False,
    )
    (two,) = list((tmp_path / "ddp").iterdir())
    for run in (one, two):
        final = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        assert final["stop_reason"] == "converged" and final["step"] == 6
    a = torch.load(one / "final_model.pt", weights_only=True)
    b = torch.load(two / "final_model.pt", weights_only=True)
    # Adam divides by sqrt(v): float-rounding differences in near-zero gradients can flip an
    # update of size ~lr, so after 6 steps the weights agree to a fraction of lr (3e-3), not
    # to float precision; the gradient test below checks the reduction itself tightly.
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-3)


def _grad_worker(rank, pg, out):
    from torch import nn

    from hmm_lang.transformer.train import _Loss

    dist.init_process_group("gloo", init_method=f"file://{pg}", rank=rank, world_size=2)
    model = HookedTransformerModel(_small_model())
    ddp = nn.parallel.DistributedDataParallel(_Loss(model))
    x, y = _batch()
    ddp(x[rank * 4 : (rank + 1) * 4], y[rank * 4 : (rank + 1) * 4]).backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out)
    dist.barrier()  # no rank tears gloo down while another is still talking
    # the gradients are on disk: leave without C++ destructors, which aborted a worker about one
    # run in ten on torch 2.13 ("terminate called without an active exception", a joinable
    # thread of the DDP reducer or of gloo destroyed at exit), failing the test after its work
    os._exit(0)


def _small_model():
    cfg = RunConfig()
    cfg.model.d_vocab, cfg.model.n_ctx, cfg.model.n_layers, cfg.model.d_model = 200, 16, 1, 32
    cfg.model.n_heads, cfg.model.d_head, cfg.model.d_mlp = 2, 16, 64
    return cfg


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 200, (8, 17), generator=g)
    return x[:, :-1], x[:, 1:]


def test_ddp_gradients_equal_the_global_batch_gradient(tmp_path):
    from hmm_lang.transformer.train import _Loss

    mp.spawn(_grad_worker, args=(str(tmp_path / "pg"), str(tmp_path / "g.pt")), nprocs=2, join=True)
    reduced = torch.load(tmp_path / "g.pt")
    model = HookedTransformerModel(_small_model())
    _Loss(model)(*_batch()).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(reduced[n], p.grad, rtol=1e-5, atol=1e-7)
