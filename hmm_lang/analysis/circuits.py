"""Attention weights and circuits of each head: W_Q, W_K, W_V, W_O, QK and OV circuits.

TransformerLens shapes: W_Q, W_K, W_V are (n_heads, d_model, d_head), W_O is
(n_heads, d_head, d_model), W_E (d_vocab, d_model), W_U (d_model, d_vocab). The OV matrix of a
head is W_V @ W_O (d_model x d_model); the original notebook's ``W_O @ W_V.T`` has mismatched
shapes.
"""

from __future__ import annotations

import numpy as np
import torch

from hmm_lang.errors import HmmLangError


def head_weights(model, layer: int, head: int) -> dict[str, torch.Tensor]:
    """``{"W_Q", "W_K", "W_V", "W_O"}`` of one head, detached."""
    blocks = model.model.blocks
    if not 0 <= layer < len(blocks):
        raise HmmLangError(f"layer {layer} out of range: the model has {len(blocks)} layers")
    attn = blocks[layer].attn
    n_heads = attn.W_Q.shape[0]
    if not 0 <= head < n_heads:
        raise HmmLangError(f"head {head} out of range: the layer has {n_heads} heads")
    return {name: getattr(attn, name)[head].detach() for name in ("W_Q", "W_K", "W_V", "W_O")}


def ov_matrix(w_v: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """(d_model, d_model) W_V @ W_O of one head."""
    return w_v @ w_o


def qk_circuit(
    w_e: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, tokens: np.ndarray
) -> torch.Tensor:
    """(n, n) W_E W_Q W_K^T W_E^T on ``tokens``: query token (row) x key token (column)."""
    e = w_e[torch.as_tensor(tokens)].float()
    return (e @ w_q.float()) @ (e @ w_k.float()).T


def ov_circuit(
    w_e: torch.Tensor, w_v: torch.Tensor, w_o: torch.Tensor, w_u: torch.Tensor, tokens: np.ndarray
) -> torch.Tensor:
    """(n, n) W_E W_V W_O W_U on ``tokens``: attended token (row) -> output logit (column)."""
    idx = torch.as_tensor(tokens)
    return (w_e[idx].float() @ w_v.float() @ w_o.float()) @ w_u[:, idx].float()


def circuits(model, layer: int, head: int, tokens: np.ndarray) -> dict[str, torch.Tensor]:
    """QK and OV circuits of one head restricted to ``tokens`` (e.g. the top-N frequent)."""
    w = head_weights(model, layer, head)
    w_e, w_u = model.model.W_E.detach(), model.model.W_U.detach()
    return {
        "QK": qk_circuit(w_e, w["W_Q"], w["W_K"], tokens),
        "OV": ov_circuit(w_e, w["W_V"], w["W_O"], w_u, tokens),
    }


@torch.no_grad()
def attention_patterns(model, tokens: torch.Tensor) -> torch.Tensor:
    """(n_layers, n_heads, pos, pos) attention patterns of every head on one sequence."""
    _, cache = model.model.run_with_cache(tokens.reshape(1, -1))
    n_layers = len(model.model.blocks)
    return torch.stack([cache[f"blocks.{i}.attn.hook_pattern"][0] for i in range(n_layers)])
