"""Train the transformer: AdamW, warmup then cosine, grad clipping, resumable, data-parallel.

A run writes ``records/<YYYYmmdd_HHMMSS>/``: ``config.yaml`` (before step 1, with the resolved
d_vocab), ``tokenizer/``, ``environment.json``, ``metrics.jsonl``, ``checkpoints/step_XXXXXXX.pt``
(model, optimizer, scheduler, step, RNG states, dev-stop state, config) and ``final_model.pt`` (a
state_dict of :class:`HookedTransformerModel`). ``resume`` continues a killed run from its last
checkpoint and reproduces the uninterrupted run's weights.

Evaluations during training score a dev split carved from the training stories
(:mod:`hmm_lang.transformer.dev_stop`); training ends at ``train.steps`` or when the dev score
stops improving (``train.patience``, ``train.tol``); the best dev evaluation's weights become
``final_model.pt``, and the validation split is scored once, with those weights. The last record
of ``metrics.jsonl`` holds that score, ``stop_reason`` and ``best_step``.
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
from hmm_lang.transformer.checkpoints import (
    check_resume,
    input_digests,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from hmm_lang.transformer.data import BosStream, WindowSampler, evaluate
from hmm_lang.transformer.dev_stop import DevStop, carve_dev_stream
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

    # the dev carve and the sampler before any folder: too little data fails here
    global_batch = tc.batch_tokens // cfg.model.n_ctx
    bos = tokenizer.convert_tokens_to_ids(BOS)
    fit_stories, dev_stream = carve_dev_stream(train_stream, tc.dev_fraction, tc.dev_seed)
    sampler = WindowSampler(
        BosStream(train_stream, bos, fit_stories), cfg.model.n_ctx, global_batch, tc.seed
    )
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
    dev_stop = DevStop(tc.patience, tc.tol)
    start = 0
    ckpt = latest_checkpoint(run_dir) if resume is not None else None
    for stale in (run_dir / "checkpoints").glob(".*.tmp"):  # a killed session's partial write
        stale.unlink(missing_ok=True)
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        if state.get("dev_stop") is not None:
            dev_stop.load_state_dict(state["dev_stop"])
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
    done, converged = start, dev_stop.converged  # a resume after the stop only finishes
    steps = range(start, start if converged else total)
    bar = tqdm(steps, desc="train", unit="step", disable=not progress or rank != 0)
    t_last, tokens_since = time.perf_counter(), 0
    postfix: dict[str, str] = {}
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
            postfix |= {"loss": f"{loss.item():.3f}", "tok_s": f"{tok_s:,.0f}"}
            bar.set_postfix(postfix)
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
        converged, evaluating = False, done % tc.eval_interval == 0 or done == total
        if rank == 0 and evaluating:
            record = _eval(model, dev_stream, bos, cfg, device, tc.eval_stories, "dev")
            dev_stop.update(done, record["dev_nats_per_token"], model)
            _log_metrics(run_dir, {"step": done, **record})
            postfix["dev"] = f"{record['dev_nats_per_token']:.3f}"
            bar.set_postfix(postfix)
            converged = dev_stop.converged
        if world > 1 and evaluating:
            flag = [converged]  # rank 0 evaluated: every rank stops at the same step
            dist.broadcast_object_list(flag, src=0)
            converged = flag[0]
        last = done == total or converged
        if rank == 0 and (done % tc.checkpoint_interval == 0 or last):
            save_checkpoint(
                run_dir / "checkpoints" / f"step_{done:07d}.pt",
                model,
                optimizer,
                done,
                sampler,
                cfg,
                dev_stop,
            )
        if stop_after is not None and done >= stop_after:
            return run_dir
        if converged:
            break
    if rank == 0:
        _finish(run_dir, model, dev_stop, valid_stream, bos, cfg, device, done, converged)
    return run_dir


def _finish(run_dir, model, dev_stop: DevStop, valid_stream, bos, cfg, device, step, converged):
    """Keep the best dev evaluation's weights, score validation once, write final_model.pt."""
    if dev_stop.best_model is not None:
        model.load_state_dict(dev_stop.best_model)
    record = _eval(model, valid_stream, bos, cfg, device, None, "valid")
    stop = "converged" if converged else "max_steps"
    log.info(
        "stopped at step %d (%s); kept step %d (dev %.4f nats/token); validation %.4f bits/byte",
        step, stop, dev_stop.best_step, dev_stop.best_nats, record["valid_bits_per_byte"],
    )  # fmt: skip
    _log_metrics(
        run_dir,
        {
            "step": step,
            **record,
            "final": True,
            "stop_reason": stop,
            "best_step": dev_stop.best_step,
            "best_dev_nats_per_token": dev_stop.best_nats,
        },
    )
    with atomic_path(run_dir / "final_model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    mark_complete(run_dir)


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
            # the final record goes too: a resume at the stop step writes it again
            if isinstance(rec, dict) and rec.get("step", step + 1) <= step and not rec.get("final"):
                keep.append(ln)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in keep))


def fast_logits(model: HookedTransformerModel):
    """A logits function through the fused-attention path (no hooks needed)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        with fast_attention(model.native):
            return model.native(x)

    return fn


def _eval(model, stream, bos, cfg: RunConfig, device, max_stories: int | None, split: str) -> dict:
    """``{split}_nats_per_token`` etc. of the first ``max_stories`` stories (None: all)."""
    model.eval()
    sc = evaluate(fast_logits(model), stream, bos, cfg.model.n_ctx, device, max_stories)
    model.train()
    n = stream.n_stories if max_stories is None else min(max_stories, stream.n_stories)
    return {
        f"{split}_nats_per_token": sc.nats / sc.n_tokens,
        f"{split}_bits_per_token": sc.bits_per_token,
        f"{split}_bits_per_byte": sc.bits_per_byte,
        f"{split}_tokens": sc.n_tokens,
        f"{split}_stories": n,
    }
