"""``HookedTransformerModel``: a TransformerLens 4 native transformer built from ``config.yaml``.

TransformerLens 4 removed ``HookedTransformer``; its native model is
``TransformerBridge.boot_native(TransformerBridgeConfig(...))``, which keeps the familiar
``W_E``, ``W_U``, ``blocks[i].attn.W_Q/W_K/W_V/W_O`` and ``run_with_cache``. This wrapper holds it
in ``.model`` so that the original research notebook runs unchanged::

    model = HookedTransformerModel(config_path)
    model.load_state_dict(torch.load(final_model_path, map_location=device))
    model.eval()
    model.model.embed.W_E; model.model.W_U; model.model.blocks[0].attn.W_K
    logits, cache = model.model.run_with_cache(tokens)
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hmm_lang.config import NORMALIZATIONS, ModelConfig, RunConfig, load_config
from hmm_lang.errors import HmmLangError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: cuda, then mps, then cpu; otherwise the named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def bridge_config(m: ModelConfig):
    """The TransformerLens config of our :class:`ModelConfig` (built in this one place)."""
    from transformer_lens import TransformerBridgeConfig

    if m.d_vocab is None:
        raise HmmLangError("model.d_vocab is not set; it comes from the run's tokenizer")
    if m.normalization not in NORMALIZATIONS:
        raise HmmLangError(
            f"model.normalization {m.normalization!r} is not one of {', '.join(NORMALIZATIONS)}"
        )
    return TransformerBridgeConfig(
        n_layers=m.n_layers,
        d_model=m.d_model,
        n_heads=m.n_heads,
        d_head=m.d_head,
        d_mlp=m.d_mlp,
        n_ctx=m.n_ctx,
        d_vocab=m.d_vocab,
        act_fn=m.act_fn,
        normalization_type=None if m.normalization == "None" else m.normalization,
        seed=m.seed,
    )


def _as_run_config(config) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, ModelConfig):
        return RunConfig(model=config)
    path = Path(config)
    if path.is_dir():
        path = path / "config.yaml"
    return load_config(path)


class HookedTransformerModel(nn.Module):
    """A TransformerLens native transformer in ``.model``; ``forward`` returns logits."""

    def __init__(self, config: str | Path | RunConfig | ModelConfig, device=None):
        super().__init__()
        from transformer_lens import TransformerBridge

        self.config = _as_run_config(config)
        self.model = TransformerBridge.boot_native(bridge_config(self.config.model))
        if device is not None:
            self.to(device)

    @property
    def native(self) -> nn.Module:
        """The plain ``nn.Module`` under the bridge (same parameters; no hook machinery)."""
        return self.model.original_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, pos) token ids -> (batch, pos, d_vocab) logits."""
        return self.model(tokens)

    def n_parameters(self, embeddings: bool = True) -> int:
        skip = {id(self.native.tok_embed.weight)} if not embeddings else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)


def _sdpa_attention(
    self, hidden_states, attention_mask=None, position_ids=None, pattern_fn=None, **kw
):
    """NativeAttention.forward through fused scaled-dot-product attention, for training.

    Same math as TransformerLens's (scores / scale, causal mask, softmax, @ V) but it never
    materialises the (batch, head, pos, pos) pattern; it returns None in its place, which
    NativeBlock ignores. Anything it does not cover falls back to the original forward.
    """
    hooked = pattern_fn is not None and (
        not hasattr(pattern_fn, "_forward_hooks") or len(pattern_fn._forward_hooks) > 0
    )  # the bridge passes its hook_pattern; only an attached hook needs the pattern
    if (
        attention_mask is not None
        or hooked
        or self.rotary is not None
        or self.kv_repeats != 1
        or self.attn_scores_soft_cap > 0
        or not self.causal
    ):
        return type(self).forward(
            self, hidden_states, attention_mask, position_ids, pattern_fn, **kw
        )
    b, s, _ = hidden_states.shape
    q = self.q(hidden_states).view(b, s, self.n_heads, self.d_head).transpose(1, 2)
    k = self.k(hidden_states).view(b, s, self.n_heads, self.d_head).transpose(1, 2)
    v = self.v(hidden_states).view(b, s, self.n_heads, self.d_head).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / self.scale)
    return self.o(out.transpose(1, 2).reshape(b, s, -1)), None


@contextlib.contextmanager
def fast_attention(native: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``native``'s attention layers use fused attention (training only)."""
    # the bridge wraps each NativeAttention; patch the wrapped module itself
    layers = [getattr(blk.attn, "original_component", blk.attn) for blk in native.layers]
    for attn in layers:
        attn.forward = types.MethodType(_sdpa_attention, attn)
    try:
        yield native
    finally:
        for attn in layers:
            del attn.forward


def model_flops_per_token(m: ModelConfig) -> float:
    """Training FLOPs per token, 6 N + attention (Kaplan et al. 2020 / nanoGPT's estimate)."""
    n = m.n_layers * (4 * m.d_model * m.n_heads * m.d_head + 2 * m.d_model * m.d_mlp)
    n += (m.d_vocab or 0) * m.d_model  # the unembedding matmul
    return 6 * n + 12 * m.n_layers * m.n_heads * m.d_head * m.n_ctx


def check_checkpoint_vocab(model_vocab: int, tokenizer_vocab: int) -> None:
    if model_vocab != tokenizer_vocab:
        raise HmmLangError(
            f"the checkpoint's vocab size is {model_vocab} but the tokenizer's is "
            f"{tokenizer_vocab}; use the tokenizer saved in the run folder"
        )


__all__ = ["HookedTransformerModel", "fast_attention", "resolve_device"]
