"""Train the transformer: AdamW, warmup then cosine, grad clipping, resumable, data-parallel.

A run writes ``records/<YYYYmmdd_HHMMSS>/``: ``config.yaml`` (before step 1, with the resolved
d_vocab), ``tokenizer/``, ``environment.json``, ``metrics.jsonl``, ``checkpoints/step_XXXXXXX.pt``
(model, optimizer, scheduler, step, RNG states, config) and ``final_model.pt`` (a state_dict of
:class:`HookedTransformerModel`). ``resume`` continues a killed run from its last checkpoint and
reproduces the uninterrupted run's weights.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hmm_lang.atomic import atomic_dir, atomic_path, write_json, write_yaml
from hmm_lang.config import RunConfig, load_config
from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.distributed import init_from_env, rank_and_world
from hmm_lang.records import mark_complete, new_run_dir, write_environment
from hmm_lang.runs import config_streams
from hmm_lang.tokenizer import BOS, EOS, load_tokenizer, resolve_tokenizer_dir
from hmm_lang.transformer.data import BosStream, WindowSampler, evaluate
from hmm_lang.transformer.model import (
    HookedTransformerModel,
    check_checkpoint_vocab,
    fast_attention,
    resolve_device,
)

log = logging.getLogger(__name__)


class _Loss(nn.Module):
    """Mean next-token cross-entropy through the fused-attention path (what DDP wraps)."""

    def __init__(self, model: HookedTransformerModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with fast_attention(self.model.native):
            logits = self.model.native(x)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


def lr_at(step: int, cfg) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``min_lr`` at the last step."""
    total = cfg.total_steps
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer(model: nn.Module, cfg) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def save_checkpoint(path: Path, model, optimizer, step: int, sampler, cfg: RunConfig) -> None:
    state = {
        "kind": "hmm_lang_checkpoint",
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"step": step},  # the schedule is a pure function of the step
        "step": step,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        "sampler": sampler.state_dict(),
        "config": cfg.to_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise HmmLangError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}); delete it to resume "
            "from the one before, or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("kind") != "hmm_lang_checkpoint":
        raise HmmLangError(f"{path} is not an hmm_lang training checkpoint")
    return state


def input_digests(train_stream, valid_stream, tokenizer_dir: Path) -> dict:
    """Content hashes of what a run trains and evaluates on: ``inputs.json`` of the run."""
    import hashlib

    tok = hashlib.blake2b((Path(tokenizer_dir) / "tokenizer.json").read_bytes(), digest_size=12)
    return {
        "train_tokens": train_stream.digest(),
        "valid_tokens": valid_stream.digest(),
        "tokenizer": tok.hexdigest(),
    }


def check_resume(run_dir: Path, digests: dict, cfg: RunConfig, ckpt: Path | None) -> None:
    """One-line error when the corpus, tokenizer or config changed since the run started."""
    saved_path = run_dir / "inputs.json"
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise HmmLangError(
                f"{saved_path} is corrupt; the run cannot be checked, start a new run"
            )
        changed = [k for k in digests if k in saved and saved[k] != digests[k]]
        if changed:
            what = {"train_tokens": "training stories", "valid_tokens": "validation stories"}
            names = ", ".join(what.get(k, k) for k in changed)
            raise HmmLangError(
                f"cannot resume {run_dir}: its {names} changed since the run started (data "
                f"{cfg.data.data}); resume with the original data and tokenizer, or start a new run"
            )
    if ckpt is None:
        return
    old = load_checkpoint(ckpt).get("config")
    if isinstance(old, dict):
        diffs = _diff(old, cfg.to_dict())
        if diffs:
            raise HmmLangError(
                f"cannot resume {run_dir}: config.yaml was edited since {ckpt.name} "
                f"({'; '.join(diffs[:3])}); undo the edit, or start a new run with the new config"
            )


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}: {x!r} -> {y!r}")
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    return ckpts[-1] if ckpts else None


def _log_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def train(
    cfg: RunConfig | None = None,
    out_dir: str | Path = "records",
    resume: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> Path:
    """Train a run (or resume ``resume``); returns its folder. ``stop_after`` ends the session
    after that step, as a kill would (for tests)."""
    if cfg is not None:
        cfg.validate()  # before any work or folder
    init_from_env()
    rank, world = rank_and_world()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").exists():
            raise HmmLangError(f"{run_dir} is not a run folder (config.yaml missing)")
        cfg = load_config(run_dir / "config.yaml")
        tokenizer_dir = resolve_tokenizer_dir(run_dir / "tokenizer")
    else:
        tokenizer_dir = resolve_tokenizer_dir(cfg.data.tokenizer)
    tokenizer = load_tokenizer(tokenizer_dir)
    if resume is not None:
        check_checkpoint_vocab(cfg.model.d_vocab, len(tokenizer))
    cfg.model.d_vocab = len(tokenizer)
    cfg.validate()
    tc = cfg.train
    if tc.check_memory:
        from hmm_lang.memory import check_memory, transformer_step_bytes

        m = cfg.model
        # each process holds its own share of the batch, on its GPU where it trains on one
        dev = resolve_device(tc.device)
        if dev.type == "cuda":
            dev = torch.device("cuda", rank % torch.cuda.device_count())
        need = transformer_step_bytes(
            tc.batch_tokens // world, m.n_ctx, m.d_model, m.d_mlp, m.n_layers, m.n_heads,
            m.d_vocab, patterns=dev.type != "cuda",
        )  # fmt: skip
        check_memory(
            need,
            f"one training step ({tc.batch_tokens // world} tokens per process)",
            "lower train.batch_tokens",
            "train.check_memory=false",
            device=dev,
        )
    if tc.batch_tokens < cfg.model.n_ctx * world:
        raise HmmLangError(
            f"train.batch_tokens {tc.batch_tokens} is below n_ctx x processes "
            f"({cfg.model.n_ctx} x {world}); raise it"
        )
    train_stream, valid_stream = config_streams(
        cfg, tokenizer_dir, run_dir if resume is not None else None
    )
    if valid_stream.n_stories == 0:
        raise HmmLangError("the validation split is empty; give it at least one story")
    eos = tokenizer.convert_tokens_to_ids(EOS)
    if (train_stream.vocab_size, train_stream.eos_id) != (len(tokenizer), eos):
        raise HmmLangError(
            f"the data's tokens (vocab {train_stream.vocab_size}, </s> {train_stream.eos_id}) are "
            f"not this tokenizer's (vocab {len(tokenizer)}, </s> {eos}); give the tokenizer the "
            "data was made with (data.tokenizer / --tokenizer)"
        )
    if cfg.model.n_ctx > int(max(train_stream.offsets[1:] - train_stream.offsets[:-1])) + 1:
        log.warning("n_ctx %d exceeds every story; windows span several stories", cfg.model.n_ctx)

    digests = input_digests(train_stream, valid_stream, tokenizer_dir)
    if resume is not None:
        check_resume(run_dir, digests, cfg, latest_checkpoint(run_dir))
    if resume is None and rank == 0:
        run_dir = new_run_dir(out_dir)
        # the tokenizer first and whole, config.yaml last: a folder with config.yaml can be
        # resumed (a kill between them left one that could not)
        with atomic_dir(run_dir / "tokenizer") as tmp:
            shutil.copytree(
                tokenizer_dir,
                tmp,
                ignore=shutil.ignore_patterns("pretokenized"),
                dirs_exist_ok=True,
            )
        write_json(run_dir / "inputs.json", digests)
        write_environment(run_dir)
        write_yaml(run_dir / "config.yaml", cfg.to_dict())  # before step 1
    if world > 1:
        holder = [str(run_dir) if rank == 0 else None]
        dist.broadcast_object_list(holder, src=0)
        run_dir = Path(holder[0])

    device = resolve_device(tc.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", rank % torch.cuda.device_count())
    torch.manual_seed(cfg.model.seed)
    model = HookedTransformerModel(cfg, device=device)
    optimizer = _optimizer(model, tc)
    global_batch = tc.batch_tokens // cfg.model.n_ctx
    bos = tokenizer.convert_tokens_to_ids(BOS)
    sampler = WindowSampler(BosStream(train_stream, bos), cfg.model.n_ctx, global_batch, tc.seed)
    start = 0
    ckpt = latest_checkpoint(run_dir) if resume is not None else None
    for stale in (run_dir / "checkpoints").glob(".*.tmp"):  # a killed session's partial write
        stale.unlink(missing_ok=True)
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        start = state["step"]
        _truncate_metrics(run_dir, start)
        log.info("resuming %s at step %d", run_dir, start)

    loss_module: nn.Module = _Loss(model)
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    if tc.compile:
        loss_module = torch.compile(loss_module)
    amp = device.type == "cuda" and tc.autocast_bf16
    total = tc.total_steps
    per_rank = global_batch // world
    bar = tqdm(range(start, total), desc="train", unit="step", disable=not progress or rank != 0)
    t_last, tokens_since = time.perf_counter(), 0
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, tc)
        x, y = sampler.next()  # the same global batch on every rank; each takes its slice
        x, y = (t[rank * per_rank : (rank + 1) * per_rank].to(device) for t in (x, y))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_module(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        tokens_since += x.numel() * world
        done = step + 1
        if rank == 0 and (done % tc.log_interval == 0 or done == total):
            now = time.perf_counter()
            tok_s = tokens_since / (now - t_last)
            t_last, tokens_since = now, 0
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tok_s:,.0f}")
            _log_metrics(
                run_dir,
                {
                    "step": done,
                    "loss": loss.item(),
                    "lr": lr_at(step, tc),
                    "grad_norm": float(grad_norm),
                    "tokens_per_s": tok_s,
                },
            )
        if rank == 0 and (done % tc.eval_interval == 0 or done == total):
            # the final evaluation scores every validation story (the ladder's scorer);
            # intermediate ones the first eval_stories, for the curve only
            final = done == total
            n_eval = None if final else tc.eval_stories
            record = _eval(model, valid_stream, bos, cfg, device, n_eval)
            _log_metrics(run_dir, {"step": done, **record, "final": final})
        if rank == 0 and (done % tc.checkpoint_interval == 0 or done == total):
            save_checkpoint(
                run_dir / "checkpoints" / f"step_{done:07d}.pt",
                model,
                optimizer,
                done,
                sampler,
                cfg,
            )
        if stop_after is not None and done >= stop_after:
            return run_dir
    if rank == 0:
        with atomic_path(run_dir / "final_model.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        mark_complete(run_dir)
    return run_dir


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metrics a killed session logged after its last checkpoint (they are redone)."""
    path = run_dir / "metrics.jsonl"
    if path.exists():
        keep = []
        for ln in path.read_text().splitlines():
            try:
                rec = json.loads(ln)
            except ValueError:  # the half-written last line of a killed session
                continue
            if isinstance(rec, dict) and rec.get("step", step + 1) <= step:
                keep.append(ln)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in keep))


def fast_logits(model: HookedTransformerModel):
    """A logits function through the fused-attention path (no hooks needed)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        with fast_attention(model.native):
            return model.native(x)

    return fn


def _eval(model, valid_stream, bos, cfg: RunConfig, device, max_stories: int | None) -> dict:
    model.eval()
    sc = evaluate(fast_logits(model), valid_stream, bos, cfg.model.n_ctx, device, max_stories)
    model.train()
    return {
        "valid_nats_per_token": sc.nats / sc.n_tokens,
        "valid_bits_per_token": sc.bits_per_token,
        "valid_bits_per_byte": sc.bits_per_byte,
        "valid_tokens": sc.n_tokens,
        "valid_stories": valid_stream.n_stories if max_stories is None else max_stories,
    }
