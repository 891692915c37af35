"""Latent variable distillation (Liu, Zhang & Van den Broeck 2023): an HMM start from a
trained transformer.

The residual stream at the position of x_t has read x_1..x_t. K-means of those vectors gives
every position a cluster z_t; the counts of z_1, of z_{t-1} -> z_t and of z_t -> x_t (plus a
small pseudocount) are an HMM, which EM then refines. The residual stream of the last layer
(``blocks.{L-1}.hook_resid_post``) is the default hook.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.clusters import kmeans
from hmm_lang.hmm.model import CategoricalHMM

log = logging.getLogger(__name__)


def counts_hmm(
    states: Sequence[np.ndarray],
    tokens: Sequence[np.ndarray],
    n_states: int,
    vocab_size: int,
    pseudocount: float = 1e-3,
) -> CategoricalHMM:
    """The HMM of the counts of state paths ``states`` emitting ``tokens`` (one per sequence)."""
    start = np.full(n_states, pseudocount)
    trans = np.full((n_states, n_states), pseudocount)
    emit = np.full((n_states, vocab_size), pseudocount)
    for z, x in zip(states, tokens, strict=True):
        start[z[0]] += 1
        np.add.at(trans, (z[:-1], z[1:]), 1)
        np.add.at(emit, (z, x), 1)
    params = [m / m.sum(-1, keepdims=True) for m in (start, trans, emit)]
    return CategoricalHMM(*(torch.from_numpy(p).float() for p in params)).validate()


@torch.no_grad()
def residuals(
    run, sequences: Sequence[np.ndarray], hook: str | None = None, batch: int = 64
) -> list[np.ndarray]:
    """(L_i, d) residual vectors at ``hook`` for the positions of every token of each sequence
    (read from ``<s> x_1 .. x_L``; sequences longer than n_ctx - 1 are cut)."""
    from hmm_lang.tokenizer import BOS

    model = run.model
    n_layers = run.config.model.n_layers
    hook = hook or f"blocks.{n_layers - 1}.hook_resid_post"
    bos = run.tokenizer.convert_tokens_to_ids(BOS)
    n_ctx = run.config.model.n_ctx
    cut = [np.asarray(s[: n_ctx - 1], dtype=np.int64) for s in sequences]
    out: list[np.ndarray] = [None] * len(cut)
    order = np.argsort([-len(s) for s in cut])
    for a in tqdm(range(0, len(order), batch), desc="LVD residuals", unit="batch", leave=False):
        idx = order[a : a + batch]
        width = len(cut[idx[0]]) + 1
        x = np.full((len(idx), width), bos, dtype=np.int64)
        for r, i in enumerate(idx):
            x[r, 1 : 1 + len(cut[i])] = cut[i]
        _, cache = model.model.run_with_cache(
            torch.from_numpy(x).to(run.device), names_filter=lambda n: n == hook
        )
        acts = cache[hook].float().cpu().numpy()  # (B, width, d)
        for r, i in enumerate(idx):
            out[i] = acts[r, 1 : 1 + len(cut[i])]
    return out


def lvd_init(
    run_dir: str,
    sequences: Sequence[np.ndarray],
    n_states: int,
    vocab_size: int,
    seed: int = 0,
    max_tokens: int = 300_000,
    hook: str | None = None,
) -> CategoricalHMM:
    """K-means (K = ``n_states``) of the residual stream of ``run_dir``'s transformer over the
    first ``max_tokens`` tokens of ``sequences``; the cluster paths' counts give the HMM."""
    from hmm_lang.runs import load_run

    run = load_run(run_dir)
    if len(run.tokenizer) != vocab_size:
        raise HmmLangError(
            f"--run {run_dir} has vocab size {len(run.tokenizer)}, the data {vocab_size}; "
            "use a run trained with the same tokenizer"
        )
    chosen, total = [], 0
    n_ctx = run.config.model.n_ctx
    for s in sequences:
        if total >= max_tokens:
            break
        chosen.append(s)
        total += min(len(s), n_ctx - 1)
    acts = residuals(run, chosen, hook)
    flat = torch.from_numpy(np.concatenate(acts))
    if len(flat) < n_states:
        raise HmmLangError(f"LVD needs at least {n_states} positions, got {len(flat)}")
    assign = kmeans(flat, n_states, torch.ones(len(flat)), seed=seed).numpy()
    bounds = np.cumsum([0] + [len(a) for a in acts])
    states = [assign[bounds[i] : bounds[i + 1]] for i in range(len(acts))]
    tokens = [np.asarray(s[: len(z)], dtype=np.int64) for s, z in zip(chosen, states, strict=True)]
    log.info("LVD: %d positions, %d clusters used", len(flat), len(np.unique(assign)))
    return counts_hmm(states, tokens, n_states, vocab_size)
