"""Start and fit blocked-emission HMMs under the fit protocol (every choice on the dev split).

The start is :func:`hmm_lang.hmm.blocked_init.init_blocked_hmm`. Training is EM on the blocked
statistics (``train="em"``) or AdamW on the marginal likelihood through a compact
parameterisation with state dropout (``train="grad"``, :mod:`hmm_lang.hmm.blocked_grad`). The
clustering (``exchange`` or ``context``, or ``auto``: both, the better on dev), the final
pseudocount and the escape mass are chosen on dev, as for cloned HMMs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hmm_lang.hmm.blocked_init import init_blocked_hmm
from hmm_lang.hmm.clusters import token_clusters
from hmm_lang.hmm.fit_cloned import em_then_tune, finish_fit
from hmm_lang.hmm.fit_setup import (
    FitResult,
    HMMFitConfig,
    em_checkpoint_path,
    split_fit_dev,
)
from hmm_lang.pretokenize import TokenStream

log = logging.getLogger(__name__)


def blocked_em(fit_seqs, dev_seqs, v, cluster, cfg, eos_id, progress, checkpoint=None):
    """One blocked-HMM fit by EM at one clustering: EM to dev convergence, then the pseudocount
    and the escape mass chosen on dev. Returns (dev ll, model, EMResult, choices, bt, lane)."""

    model = init_blocked_hmm(
        fit_seqs, v, cluster, cfg.states // cfg.clusters, cfg.escape, cfg.seed,
        escape_model=cfg.escape_model, eos_id=eos_id,
    )  # fmt: skip
    out = em_then_tune(
        model, model.block_size**2, fit_seqs, dev_seqs, cfg, "blocked EM", progress, checkpoint
    )
    log.info("blocked HMM: pseudocount %s, escape %g chosen on dev", *out[3].values())
    return out


def fit_blocked(
    train: TokenStream,
    valid: TokenStream | None,
    cfg: HMMFitConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> FitResult:
    """Blocked HMM with ``cfg.states`` states in ``cfg.clusters`` clusters: clustering (or both
    with ``auto``) and training choices on dev; validation scored once at the end. With
    ``checkpoint`` (see ``fit_hmm``), EM training resumes; gradient training starts over."""
    t0 = time.perf_counter()
    fit_seqs, dev_seqs, dev_bytes = split_fit_dev(train, valid, cfg)
    v = train.vocab_size
    methods = ("exchange", "context") if cfg.clustering == "auto" else (cfg.clustering,)
    best = None
    resumed = 0.0  # wall seconds of EM spent before a resume, in an earlier process
    for method in methods:
        tc = time.perf_counter()
        cluster = token_clusters(method, fit_seqs, v, cfg.clusters, cfg.seed)
        log.info("%s clustering: %.1f s", method, time.perf_counter() - tc)
        if cfg.train == "grad":
            from hmm_lang.hmm.blocked_grad import blocked_grad

            out = blocked_grad(fit_seqs, dev_seqs, v, cluster, cfg, train.eos_id, progress)
        else:
            ckpt = em_checkpoint_path(checkpoint, method)
            out = blocked_em(fit_seqs, dev_seqs, v, cluster, cfg, train.eos_id, progress, ckpt)
            resumed += out[2].resumed_seconds
        log.info("clustering %s: dev %.4f nats/token", method, -out[0] / sum(map(len, dev_seqs)))
        if best is None or out[0] > best[1][0]:
            best = (method, out)
    method, out = best
    extra = {"clustering": method, "train": cfg.train, "escape_model": cfg.escape_model}
    return finish_fit(out, extra, valid, fit_seqs, dev_seqs, dev_bytes, t0 - resumed)
