"""Memory estimates checked against the RAM this machine has free, before large allocations.

A fit or a training step that cannot fit fails at once with a one-line error naming the
estimate, instead of swapping or being killed minutes later. ``--no-memory-check`` (or
``check_memory=False``) skips the check.
"""

from __future__ import annotations

from hmm_lang.errors import HmmLangError

GiB = float(1 << 30)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(
    need: float, what: str, fix: str, override: str = "--no-memory-check", device=None
) -> None:
    """One-line error when ``need`` bytes exceed the free memory of ``device`` (a CUDA
    ``torch.device``: its free GPU memory; otherwise the available RAM)."""
    where = ""
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        have, where = torch.cuda.mem_get_info(device)[0], f" on {device}"
    else:
        have = available_bytes()
    if have is not None and need > have:
        raise HmmLangError(
            f"{what} needs about {need / GiB:.1f} GiB but {have / GiB:.1f} GiB is free{where}; "
            f"{fix} (or {override} to try anyway)"
        )


def dense_fit_bytes(states: int, vocab_size: int, batch_tokens: int) -> float:
    """Dense EM: parameters (float32) and statistics (float64) of start, transitions and
    emissions, the (T, N, K) beliefs of one batch (float32, twice: forward and backward), and
    the M-step's copy."""
    k, v = states, vocab_size
    params = 4.0 * (k * k + k * v + k)
    stats = 8.0 * (k * k + k * v + k)
    beliefs = 2 * 4.0 * batch_tokens * k
    return 2 * params + stats + beliefs


def transformer_step_bytes(
    batch_tokens: int, n_ctx: int, d_model: int, d_mlp: int, n_layers: int, n_heads: int,
    d_vocab: int, patterns: bool = True,
) -> float:  # fmt: skip
    """Activations kept for backward in one step (float32): per layer the residual, attention
    and MLP activations and, unless the attention kernel is fused (``patterns=False``: CUDA's
    flash / memory-efficient scaled-dot-product attention keeps none), the (B, H, n_ctx, n_ctx)
    patterns; the logits and their gradient."""
    b = batch_tokens // max(n_ctx, 1)
    per_layer = batch_tokens * (8 * d_model + 2 * d_mlp)
    if patterns:
        per_layer += 2 * b * n_heads * n_ctx * n_ctx
    return 4.0 * (n_layers * per_layer + 3 * batch_tokens * d_vocab)
