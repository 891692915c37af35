"""Sampling continuations from a trained transformer."""

from __future__ import annotations

import torch

from hmm_lang.transformer.model import HookedTransformerModel, fast_attention


@torch.no_grad()
def generate(
    model: HookedTransformerModel,
    prompt_ids: list[int],
    max_new_tokens: int = 60,
    temperature: float = 1.0,
    eos_id: int | None = None,
    seed: int = 0,
) -> list[int]:
    """Continue ``prompt_ids`` by sampling at ``temperature`` (0: greedy); stop at ``eos_id``."""
    g = torch.Generator().manual_seed(seed)
    n_ctx = model.config.model.n_ctx
    device = model.native.tok_embed.weight.device
    ids = list(prompt_ids)
    for _ in range(max_new_tokens):
        x = torch.tensor([ids[-n_ctx:]], device=device)
        with fast_attention(model.native):
            logits = model.native(x)[0, -1].float().cpu()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g))
        ids.append(nxt)
        if eos_id is not None and nxt == eos_id:
            break
    return ids[len(prompt_ids) :]
