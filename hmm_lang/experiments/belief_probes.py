"""Belief-state probes that can fail: targets that are not a function of the current token,
controls that show what token identity alone explains, cross-validation and intervals.

Targets (for a dense HMM with K states; eta_t = P(s_t | x_1..t)):
- ``belief``: eta_t itself.
- ``history``: eta_t - E[eta | x_t], the mean over *training* positions with the same token:
  what the belief holds beyond the current token.
- ``ahead2``, ``ahead3``: the HMM's predictive distributions two and three tokens ahead,
  eta A^2 B and eta A^3 B, over the ``top`` most frequent tokens (the next-token logits do not
  hold them).

Controls per target: ``token_baseline`` (the cross-fitted mean of the target per current token:
the best a token-only probe can do), ``token_shuffle`` (the target permuted among positions that
share the current token, probed from the same features: what token identity alone lets a probe
recover), ``random_init`` (a transformer of the same shape, untrained), and the transformer's
own next-token log-probabilities (``logits``) alone and joined to each layer (``+logits``):
is there belief information beyond the prediction?

Every R^2 is out-of-fold (k folds split by story), with a story-bootstrap 95% interval; each row
also gives its paired difference to ``token_baseline`` on the same resamples.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from hmm_lang.analysis.probing import (
    FoldedRidge,
    StoryBootstrap,
    cv_token_means,
    group_sums,
    interval,
    r2_score,
)
from hmm_lang.hmm.batching import LaneBatch
from hmm_lang.hmm.inference import forward
from hmm_lang.hmm.model import CategoricalHMM

log = logging.getLogger(__name__)

TARGETS = ("belief", "history", "ahead2", "ahead3")


def one_story_per_lane(stories: list[np.ndarray]) -> LaneBatch:
    """Each story in a lane of its own, from t = 0, padded to the longest (the layout the
    probes read beliefs in: lane i, step t is story i's token t)."""
    t = max(len(s) for s in stories)
    tokens = torch.zeros(len(stories), t, dtype=torch.long)
    valid = torch.zeros(len(stories), t, dtype=torch.bool)
    for i, s in enumerate(stories):
        tokens[i, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
        valid[i, : len(s)] = True
    start = torch.zeros_like(valid)
    start[:, 0] = True
    return LaneBatch(tokens, start, valid)


@torch.no_grad()
def token_mean_beliefs(
    hmm: CategoricalHMM, stories: list[np.ndarray], vocab_size: int, batch: int = 64
) -> np.ndarray:
    """(V, K) mean filtering belief over the positions of ``stories`` holding each token (the
    overall mean for tokens that never occur)."""
    k = hmm.n_states
    sums, counts = np.zeros((vocab_size, k)), np.zeros(vocab_size)
    for a in range(0, len(stories), batch):
        chunk = [s.astype(np.int64) for s in stories[a : a + batch]]
        lanes = one_story_per_lane(chunk)
        alpha = forward(hmm, lanes).alpha.transpose(0, 1).double().numpy()  # (N, T, K)
        valid = lanes.valid.numpy()
        tok = lanes.tokens.numpy()[valid]
        sums += group_sums(tok, alpha[valid], vocab_size)
        counts += np.bincount(tok, minlength=vocab_size)
    overall = sums.sum(0) / max(counts.sum(), 1)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], overall)


def belief_targets(
    hmm: CategoricalHMM,
    beliefs: np.ndarray,
    tokens: np.ndarray,
    token_means: np.ndarray,
    top: np.ndarray,
) -> dict[str, np.ndarray]:
    """The :data:`TARGETS` at each position: (n, K) or (n, len(top))."""
    a = hmm.trans.double().numpy()
    b = hmm.emit.double().numpy()[:, top]
    two = beliefs @ a @ a
    return {
        "belief": beliefs,
        "history": (beliefs - token_means[tokens]).astype(beliefs.dtype),
        "ahead2": two @ b,
        "ahead3": two @ a @ b,
    }


def shuffle_within_tokens(y: np.ndarray, tokens: np.ndarray, seed: int = 0) -> np.ndarray:
    """``y`` with rows permuted among the positions that share the current token."""
    rng = np.random.default_rng(seed)
    order = np.argsort(tokens, kind="stable")
    out = y.copy()
    bounds = np.flatnonzero(np.diff(tokens[order])) + 1
    for grp in np.split(order, bounds):
        out[grp] = y[rng.permutation(grp)]
    return out


def _row(target, features, control, y, pred, boot, base, n_stories) -> dict:
    """R^2 of ``pred`` (point estimate and story-bootstrap interval) and its paired difference
    to the token baseline ``base`` = (point, resamples)."""
    point = r2_score(y, pred)
    r2s = boot.r2(y, pred)
    lo, hi = interval(r2s)
    dlo, dhi = interval(r2s - base[1])
    return {
        "target": target,
        "features": features,
        "control": control,
        "r2": point,
        "r2_lo": lo,
        "r2_hi": hi,
        "above_token": point - base[0],
        "above_lo": dlo,
        "above_hi": dhi,
        "n_positions": len(y),
        "n_stories": n_stories,
    }


def probe_rows(
    features: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    tokens: np.ndarray,
    groups: np.ndarray,
    k: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    keep_rows: np.ndarray | None = None,
) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """One row per target x features x control (see the module docstring), and the trained
    probes' out-of-fold predictions of ``history`` from each layer at ``keep_rows`` (all rows
    when None), ``{"history": {features: (len(keep_rows), K)}}``, for the geometry figure (only
    those: all of them would be 4 targets x every feature set x (n, K) floats, gigabytes at
    200k positions).

    ``features`` holds the trained model's hooks, ``embedding``, optionally ``logits``, and
    ``random:<hook>`` for the untrained model."""
    boot = StoryBootstrap.draw(groups, n_boot, seed)
    n_st = len(np.unique(groups))
    trained = [f for f in features if not f.startswith("random:")]
    layers = [f for f in trained if f not in ("embedding", "logits")]
    # joined sets are built one at a time, when probed
    sets = {f: (lambda f=f: features[f]) for f in trained}
    if "logits" in features:
        for h in layers:
            sets[f"{h}+logits"] = lambda h=h: np.concatenate([features[h], features["logits"]], 1)
    sets |= {f: (lambda f=f: features[f]) for f in features if f.startswith("random:")}
    shuffled = {t: shuffle_within_tokens(y, tokens, seed) for t, y in targets.items()}
    rows, preds = [], {t: {} for t in targets}
    base, base_sh = {}, {}
    for t, y in targets.items():
        p = cv_token_means(tokens, y, groups, k, seed)
        base[t] = (r2_score(y, p), boot.r2(y, p))
        rows.append(_row(t, "current token", "token_baseline", y, p, boot, base[t], n_st))
        # the shuffled target's own token baseline: its rows are compared with that
        ps = cv_token_means(tokens, shuffled[t], groups, k, seed)
        base_sh[t] = (r2_score(shuffled[t], ps), boot.r2(shuffled[t], ps))
    bar = tqdm(sets.items(), desc="belief probes", unit="feature set", disable=not progress)
    for name, build in bar:
        ridge = FoldedRidge(build(), groups, k, seed)
        for t, y in targets.items():
            p = ridge.predict(y)
            if name.startswith("random:"):
                short = name.removeprefix("random:")
                rows.append(_row(t, short, "random_init", y, p, boot, base[t], n_st))
                continue
            if t == "history" and name in layers:
                kept = p if keep_rows is None else p[keep_rows]
                preds[t][name] = kept.astype(np.float32)
            rows.append(_row(t, name, "trained", y, p, boot, base[t], n_st))
            ps = ridge.predict(shuffled[t])
            rows.append(_row(t, name, "token_shuffle", shuffled[t], ps, boot, base_sh[t], n_st))
    return rows, preds
