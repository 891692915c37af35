"""Training throughput of hmm_lang's transformer step against plain PyTorch, same process.

    python benchmarks/bench_train.py [--config configs/cpu_small.yaml] [--steps 6]

The anchor is a plain PyTorch causal transformer of identical shape (same parameter count,
fused scaled-dot-product attention), trained with the same AdamW step and clipping. Reported:
tokens/s of each, their ratio (target >= 0.8), and model FLOP/s (6 N + attention per token,
as nanoGPT counts) against this machine's measured float32 matmul FLOP/s. Also timed: the
project's step through TransformerLens's own attention (the pattern-materialising path).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import matmul_flops
from torch import nn

from hmm_lang.config import load_config
from hmm_lang.transformer.model import HookedTransformerModel, model_flops_per_token
from hmm_lang.transformer.train import _Loss, _optimizer

ROOT = Path(__file__).resolve().parents[1]


class Block(nn.Module):
    def __init__(self, d, h, dh, m):
        super().__init__()
        self.h, self.dh = h, dh
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v = nn.Linear(d, h * dh), nn.Linear(d, h * dh), nn.Linear(d, h * dh)
        self.o = nn.Linear(h * dh, d)
        self.fc, self.proj = nn.Linear(d, m), nn.Linear(m, d)

    def forward(self, x):
        b, t, _ = x.shape
        y = self.ln1(x)
        q, k, v = (
            f(y).view(b, t, self.h, self.dh).transpose(1, 2) for f in (self.q, self.k, self.v)
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.tok = nn.Embedding(m.d_vocab, m.d_model)
        self.pos = nn.Embedding(m.n_ctx, m.d_model)
        self.blocks = nn.ModuleList(
            Block(m.d_model, m.n_heads, m.d_head, m.d_mlp) for _ in range(m.n_layers)
        )
        self.ln = nn.LayerNorm(m.d_model)
        self.head = nn.Linear(m.d_model, m.d_vocab, bias=False)

    def forward(self, x, y):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        for blk in self.blocks:
            h = blk(h)
        logits = self.head(self.ln(h))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


class SlowLoss(_Loss):
    """The project's step through TransformerLens's own (hooked, pattern-building) attention."""

    def forward(self, x, y):
        logits = self.model.native(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def time_steps(module: nn.Module, loss_module, tc, batches) -> float:
    """Tokens/s of the training step (AdamW as in train.py, clipping), first step excluded."""
    opt = _optimizer(module, tc)
    for i, (x, y) in enumerate(batches):
        if i == 1:
            t0 = time.perf_counter()  # the first step warms up allocators
        loss = loss_module(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(), tc.grad_clip)
        opt.step()
    n_tok = sum(x.numel() for x, _ in batches[1:])
    return n_tok / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "cpu_small.yaml"))
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    cfg = load_config(args.config)
    cfg.model.d_vocab = args.vocab
    m, tc = cfg.model, cfg.train
    b = tc.batch_tokens // m.n_ctx
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps + 1):
        w = torch.randint(0, m.d_vocab, (b, m.n_ctx + 1), generator=g)
        batches.append((w[:, :-1], w[:, 1:]))
    ours = HookedTransformerModel(cfg)
    plain = PlainGPT(m)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_plain = sum(p.numel() for p in plain.parameters())
    peak = matmul_flops()
    flops = model_flops_per_token(m)
    print(f"shape {m}\nparameters: hmm_lang {n_ours:,}  plain {n_plain:,}; batch {b}x{m.n_ctx}")
    print(f"float32 matmul {peak / 1e9:.1f} GFLOP/s, model {flops / 1e6:.1f} MFLOP/token")
    rates = {}
    for _ in range(2):  # alternate, so that drift on a shared machine hits both
        rates.setdefault("plain", []).append(time_steps(plain, plain, tc, batches))
        rates.setdefault("hmm_lang", []).append(time_steps(ours, _Loss(ours), tc, batches))
    rates["hmm_lang, TL attention"] = [time_steps(ours, SlowLoss(ours), tc, batches)]
    base = max(rates["plain"])
    for name, r in rates.items():
        best = max(r)
        print(
            f"{name:>24}: {best:>9,.0f} tok/s  ratio {best / base:.2f}  "
            f"{best * flops / 1e9:.1f} GFLOP/s = {best * flops / peak:.1%} of matmul"
        )


if __name__ == "__main__":
    main()
