"""Is an HMM's belief state linearly readable from a transformer's residual stream?

In the spirit of Shai et al. 2024, but on real language with a fitted HMM: at every position of
the validation stories, the HMM's forward belief eta_t = P(s_t | x_1..t) is the target; ridge
regressions from each layer's residual stream predict it, scored by held-out R^2 (split by
story). Controls: the token embedding alone, a randomly initialised transformer of the same
shape, and shuffled beliefs. Also: the mean KL divergence between the two models' next-token
distributions.

Alignment: the transformer reads ``<s> x_1 .. x_T``; at input position p (token x_p, p >= 1) its
residual stream has seen x_1..x_p, as has the belief eta_p; both predict x_{p+1}.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from hmm_lang.analysis.residual import residual_hooks
from hmm_lang.errors import HmmLangError
from hmm_lang.experiments.belief_probes import one_story_per_lane
from hmm_lang.hmm.inference import forward
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.pretokenize import TokenStream

log = logging.getLogger(__name__)


@dataclass
class BeliefData:
    beliefs: np.ndarray  # (n, K) HMM filtering distributions (float32)
    features: dict[str, np.ndarray]  # name -> (n, d) activations at the same positions (float32)
    groups: np.ndarray  # (n,) story index, for the held-out split
    kl_transformer_hmm: float  # mean KL(P_transformer || P_hmm) over next tokens, nats
    kl_hmm_transformer: float
    tokens: np.ndarray | None = None  # (n,) the current token x_p at each position


def _story_batch(stream: TokenStream, n_tokens: int, n_ctx: int) -> list[np.ndarray]:
    """Stories (each cut to n_ctx - 1 tokens, so ``<s> story`` fits) until n_tokens positions."""
    out, total = [], 0
    for i in range(stream.n_stories):
        s = stream.story(i)[: n_ctx - 1].astype(np.int64)
        if len(s) < 2:
            continue
        out.append(s)
        total += len(s)
        if total >= n_tokens:
            break
    if not out:
        raise HmmLangError("no validation story long enough for belief probing")
    return out


@torch.no_grad()
def collect_belief_data(
    model,
    random_model,
    hmm: CategoricalHMM,
    stream: TokenStream,
    bos_id: int,
    n_tokens: int = 20_000,
    batch_size: int = 32,
    top_tokens: np.ndarray | None = None,
) -> BeliefData:
    """Beliefs, residual streams (real and random model, every layer), embeddings, and KLs.
    With ``top_tokens``, the transformer's next-token log-probabilities of those tokens are
    kept too, as feature ``logits``."""
    if hmm.vocab_size != stream.vocab_size:
        raise HmmLangError(
            f"the HMM has vocab {hmm.vocab_size} but the stream {stream.vocab_size}; fit the HMM "
            "with the transformer run's tokenizer"
        )
    n_ctx = model.config.model.n_ctx
    stories = _story_batch(stream, n_tokens, n_ctx)
    hooks = residual_hooks(len(model.model.blocks))
    feats: dict[str, list[np.ndarray]] = {}
    beliefs, groups, kl_th, kl_ht, toks = [], [], [], [], []
    emit_t = hmm.emit.double()
    for a in range(0, len(stories), batch_size):
        chunk = stories[a : a + batch_size]
        alpha = forward(hmm, one_story_per_lane(chunk)).alpha.transpose(0, 1)  # (N, T, K)
        x = torch.zeros(len(chunk), max(len(s) for s in chunk) + 1, dtype=torch.long)
        x[:, 0] = bos_id
        for i, s in enumerate(chunk):
            x[i, 1 : len(s) + 1] = torch.from_numpy(np.asarray(s, dtype=np.int64))
        logits, cache = model.model.run_with_cache(
            x, names_filter=lambda n: n in hooks or n == "hook_embed"
        )
        _, rcache = random_model.model.run_with_cache(x, names_filter=lambda n: n in hooks)
        for i, s in enumerate(chunk):
            pos = np.arange(1, len(s))  # input positions holding x_1..x_{T-1}: next token exists
            beliefs.append(alpha[i, pos - 1].float().numpy())
            groups.append(np.full(len(pos), a + i))
            toks.append(s[pos - 1])
            for h in hooks:
                feats.setdefault(h, []).append(cache[h][i, pos].float().numpy())
                feats.setdefault(f"random:{h}", []).append(rcache[h][i, pos].float().numpy())
            feats.setdefault("embedding", []).append(cache["hook_embed"][i, pos].float().numpy())
            p_hmm = (alpha[i, pos - 1].double() @ hmm.trans.double()) @ emit_t  # (n, V)
            log_t = torch.log_softmax(logits[i, pos].double(), -1)
            if top_tokens is not None:
                top = torch.as_tensor(top_tokens)
                feats.setdefault("logits", []).append(log_t[:, top].float().numpy())
            log_h = torch.log(p_hmm.clamp(min=1e-300))
            kl_th.append(float((log_t.exp() * (log_t - log_h)).sum()))
            kl_ht.append(float((p_hmm * (log_h - log_t)).sum()))
    n = sum(len(b) for b in beliefs)
    return BeliefData(
        np.concatenate(beliefs),
        {k: np.concatenate(v) for k, v in feats.items()},
        np.concatenate(groups),
        sum(kl_th) / n,
        sum(kl_ht) / n,
        np.concatenate(toks).astype(np.int64),
    )


def dominant_states(hmm: CategoricalHMM, n_iter: int = 200) -> np.ndarray:
    """(V,) each token's most probable state, argmax_k pi_k P(v | k) with pi stationary."""
    pi = torch.full((hmm.n_states,), 1.0 / hmm.n_states, dtype=torch.float64)
    a = hmm.trans.double()
    for _ in range(n_iter):
        pi = pi @ a
    return (pi[:, None] * hmm.emit.double()).argmax(0).numpy()


MAX_DENSE_STATES = 4096  # a blocked HMM is probed through its dense form: K^2 float64 entries


def belief_hmm(path) -> tuple[CategoricalHMM, dict]:
    """The HMM of a saved fit as the dense model whose beliefs are probed, and what it was.

    A blocked HMM (Chiu & Rush 2020) becomes its exact dense form (state c * n + i, zero
    emissions outside each state's cluster): its belief at t lies on the n states of x_t's
    cluster, so the token does not fix the state; the targets are the same K-dim vectors as
    for a dense HMM. Cloned HMMs (one token per cluster) have V x clones states, too many for
    the dense form at any useful size; they are refused with a one-line error."""
    from hmm_lang.hmm.blocked import BlockedHMM
    from hmm_lang.hmm.cloned import ClonedHMM
    from hmm_lang.hmm.files import load_hmm

    model, config = load_hmm(path)
    info = {"path": str(path), "family": type(model).__name__, "n_states": model.n_states}
    if isinstance(model, ClonedHMM):
        raise HmmLangError(
            f"{path} is a cloned HMM ({model.n_states} states): its beliefs are not probed; give a "
            "dense or blocked HMM (hmm-lang fit-hmm --blocked: the cloned HMM's general case)"
        )
    if isinstance(model, BlockedHMM):
        if model.n_states > MAX_DENSE_STATES:
            raise HmmLangError(
                f"{path}: a blocked HMM of {model.n_states} states; the beliefs experiment takes "
                f"at most {MAX_DENSE_STATES} (its dense form); fit one with --states "
                f"{MAX_DENSE_STATES} or fewer"
            )
        info |= {"clusters": model.n_clusters, "block_size": model.block_size}
        model = model.to_dense()
    info["config"] = config
    return model, info


def check_probe_memory(n_states: int, n_tokens: int) -> None:
    """The probes hold targets of (positions x K) floats, their within-token shuffles, float64
    predictions and residuals, and every layer's features: about 8 bytes x positions x
    (8 K + 4000), 18.7 GB at K=1024 and 192k positions, where the measured peak RSS was 16.5 GB."""
    from hmm_lang.memory import check_memory

    check_memory(
        8.0 * n_tokens * (8 * n_states + 4000),
        f"belief probes of a {n_states}-state HMM at {n_tokens:,} positions",
        "lower --tokens",
    )


SMOKE = dict(states=8, iters=2, n_tokens=1500, k_folds=3, n_boot=50, top_tokens=32)


def belief_diagnostics(beliefs: np.ndarray) -> dict:
    """How peaked the beliefs are: what made the plain ``belief`` target nearly a function of
    the current token in the first version of this experiment."""
    p = np.clip(beliefs.astype(np.float64), 1e-300, 1)  # float32 would round 1e-300 to 0
    ent = -(p * np.log2(p)).sum(1)
    return {
        "mean_entropy_bits": float(ent.mean()),
        "median_entropy_bits": float(np.median(ent)),
        "share_top_state_above_0.9": float((beliefs.max(1) > 0.9).mean()),
    }


def run_beliefs(
    run_path,
    hmm: CategoricalHMM | None,
    out_dir,
    states: int = 256,
    iters: int = 300,
    n_tokens: int = 200_000,
    seed: int = 0,
    figure_tokens: int = 1024,
    k_folds: int = 5,
    n_boot: int = 1000,
    top_tokens: int = 256,
    progress: bool = True,
    max_train_stories: int | None = None,
    device: str = "cpu",
    hmm_info: dict | None = None,
):
    """Fit (or take) an HMM on the run's training tokens, probe every target against every
    control, write ``<out_dir>/<time>_beliefs/`` (beliefs.csv, beliefs.md, figures).

    The HMM follows the fit protocol (choices on a dev split of the training stories); the
    probes read validation stories only. ``max_train_stories`` caps the HMM's training stories;
    ``device`` is where its EM runs; ``hmm_info`` says what a given ``hmm`` is (see
    :func:`belief_hmm`), written to config.yaml and kl.json."""
    import copy

    from hmm_lang.analysis.embeddings import (
        coarse_grain,
        cosine_similarity_matrix,
        order_by_groups,
        token_labels,
    )
    from hmm_lang.atomic import write_json, write_text, write_yaml
    from hmm_lang.experiments.belief_probes import belief_targets, probe_rows, token_mean_beliefs
    from hmm_lang.hmm.fit import HMMFitConfig, fit_hmm
    from hmm_lang.plots.beliefs import belief_geometry_figure, belief_r2_figure
    from hmm_lang.plots.embeddings import coarse_grained_figure
    from hmm_lang.plots.export import save_figure
    from hmm_lang.records import mark_complete, new_run_dir, write_environment
    from hmm_lang.runs import load_run, run_streams, token_counts
    from hmm_lang.stats import write_csv
    from hmm_lang.tokenizer import BOS
    from hmm_lang.transformer import HookedTransformerModel

    if min(states, iters, n_tokens, top_tokens) < 1 or k_folds < 3 or n_boot < 10:
        raise HmmLangError(
            "--states, --iters, --tokens and --top-tokens must be >= 1, --k-folds >= 3, "
            "--n-boot >= 10"
        )
    check_probe_memory(states if hmm is None else hmm.n_states, n_tokens)
    run = load_run(run_path)
    train, valid = run_streams(run)
    out = new_run_dir(out_dir, "beliefs")
    settings = dict(states=states, iters=iters, n_tokens=n_tokens, seed=seed, k_folds=k_folds)
    settings |= dict(n_boot=n_boot, top_tokens=top_tokens, max_train_stories=max_train_stories)
    if hmm_info is None and hmm is not None:
        hmm_info = {"family": "CategoricalHMM", "n_states": hmm.n_states}
    settings["hmm"] = hmm_info or {"family": "CategoricalHMM", "fitted_here": True}
    write_yaml(out / "config.yaml", {"run": str(run.path), **settings})
    write_environment(out)
    if hmm is None:
        hc = HMMFitConfig(
            states=states, max_iters=iters, seed=seed, max_train_stories=max_train_stories,
            device=device,
        )  # fmt: skip
        fit = fit_hmm(train, None, hc)
        hmm = fit.model
        hmm.save(out / "hmm.pt")
        write_json(
            out / "hmm_metrics.json", {k: v for k, v in fit.metrics.items() if k != "history"}
        )
    rcfg = copy.deepcopy(run.config)
    rcfg.model.seed = run.config.model.seed + 1000
    random_model = HookedTransformerModel(rcfg).eval()
    bos = run.tokenizer.convert_tokens_to_ids(BOS)
    counts = token_counts(train, len(run.tokenizer))
    top = np.argsort(-counts, kind="stable")[:top_tokens]
    data = collect_belief_data(
        run.model, random_model, hmm, valid, bos, n_tokens=n_tokens, top_tokens=top
    )
    # E[eta | token] from training positions (about as many as probed), never validation
    budget, train_stories = 2 * n_tokens, []
    for s in train.stories():
        train_stories.append(s)
        budget -= len(s)
        if budget <= 0:
            break
    means = token_mean_beliefs(hmm, train_stories, hmm.vocab_size)
    targets = belief_targets(hmm, data.beliefs, data.tokens, means, top)
    # the geometry figure's positions: only their probe predictions are kept
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(data.tokens), size=min(3000, len(data.tokens)), replace=False))
    rows, preds = probe_rows(
        data.features, targets, data.tokens, data.groups, k_folds, n_boot, seed, progress, shown
    )
    write_csv(out / "beliefs.csv", rows)
    table = [
        "| target | features | control | R^2 [95% CI] | above token baseline [95% CI] |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {r['target']} | {r['features']} | {r['control']} | {r['r2']:.4f} "
        f"[{r['r2_lo']:.4f}, {r['r2_hi']:.4f}] | {r['above_token']:+.4f} "
        f"[{r['above_lo']:+.4f}, {r['above_hi']:+.4f}] |"
        for r in rows
    ]
    write_text(out / "beliefs.md", "\n".join(table) + "\n")
    kl = {
        "kl_transformer_hmm_nats": data.kl_transformer_hmm,
        "kl_hmm_transformer_nats": data.kl_hmm_transformer,
        "positions": len(data.beliefs),
        "stories": int(len(np.unique(data.groups))),
        **belief_diagnostics(data.beliefs),
        "hmm": {k: v for k, v in settings["hmm"].items() if k != "config"},
    }
    write_json(out / "kl.json", kl)
    layer_preds = {f: p for f, p in preds["history"].items() if f.startswith("blocks.")}
    layer_preds = {f: p for f, p in layer_preds.items() if "+logits" not in f}
    figs = {
        "r2_by_layer": belief_r2_figure(rows),
        "history_geometry": belief_geometry_figure(
            targets["history"][shown], layer_preds, data.beliefs[shown].argmax(1),
            title="history target (belief minus its mean given the token): PCA of the truth "
            "and of each layer's probe",
        ),
    }  # fmt: skip
    groups = dominant_states(hmm)
    top_fig = np.argsort(-counts, kind="stable")[:figure_tokens]
    order = top_fig[order_by_groups(groups[top_fig])]
    sim = cosine_similarity_matrix(run.model.model.W_E.detach()[torch.as_tensor(order)]).numpy()
    _, block = np.unique(groups[order], return_inverse=True)
    figs["embedding_by_hmm_state"] = coarse_grained_figure(
        sim,
        token_labels(run.tokenizer, order),
        coarse_grain(sim, block),
        [f"state {g}" for g in np.unique(groups[order])],
        "W_E similarity ordered and coarse-grained by dominant HMM state",
    )
    for name, fig in figs.items():
        save_figure(fig, out, name, png=False)
    mark_complete(out)
    return out, rows, kl, figs
