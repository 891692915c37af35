"""Which start converges to the better dev likelihood? EM curves of each start at each K.

For each K and each start (``split``, ``class-bigram``, ``lvd``, ``random``), a dense HMM is
fitted under the protocol of :mod:`hmm_lang.hmm.fit` (dev split carved from training, stop on
dev convergence) and its dev bits per byte are recorded at every iteration. Validation is not
read: this experiment chooses the default start. Caveat: the ``lvd`` transformer was trained on
the whole training split, the dev stories included, which favours ``lvd`` on dev a little.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import plotly.graph_objects as go

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.fit import HMMFitConfig, fit_hmm
from hmm_lang.pretokenize import TokenStream

log = logging.getLogger(__name__)

START_COLORS = {
    "split": "#d62728",
    "class-bigram": "#1f77b4",
    "lvd": "#2ca02c",
    "random": "#7f7f7f",
}
K_DASH = {0: "solid", 1: "dash", 2: "dot", 3: "dashdot"}


@dataclass
class StartsConfig:
    states: tuple[int, ...] = (64, 256)
    inits: tuple[str, ...] = ("split", "class-bigram", "lvd")
    run: str | None = None  # transformer run for lvd
    max_iters: int = 300
    tol: float = 1e-4
    patience: int = 3
    seed: int = 0
    max_train_stories: int | None = None

    def validate(self) -> StartsConfig:
        """One-line errors before any work (the CLI calls this before making a folder)."""
        from hmm_lang.hmm.fit import INITS

        if not self.states or min(self.states) < 1:
            raise HmmLangError("--states must list values of at least 1")
        if not self.inits or any(i not in INITS for i in self.inits):
            raise HmmLangError(f"--inits must be among {', '.join(INITS)}")
        if set(self.inits) == {"lvd"} and self.run is None:
            raise HmmLangError("--inits lvd needs --run RUN_DIR, a trained transformer run")
        if self.max_iters < 1 or self.patience < 1 or not self.tol >= 0:
            raise HmmLangError("--max-iters and --patience must be >= 1, --tol >= 0")
        if self.max_train_stories is not None and self.max_train_stories < 2:
            raise HmmLangError("--max-train-stories must be at least 2 (one goes to dev)")
        return self


def start_curves(train: TokenStream, cfg: StartsConfig) -> tuple[list[dict], list[dict]]:
    """(one row per iteration of every fit, one summary row per fit)."""
    curves, summary = [], []
    for k in cfg.states:
        for init in cfg.inits:
            if init == "lvd" and cfg.run is None:
                log.warning("skipping the lvd start: no --run given")
                continue
            fc = HMMFitConfig(
                states=k,
                init=init,
                run=cfg.run,
                max_iters=cfg.max_iters,
                tol=cfg.tol,
                patience=cfg.patience,
                seed=cfg.seed,
                max_train_stories=cfg.max_train_stories,
            )
            res = fit_hmm(train, None, fc)
            dev_bytes_per_token = res.dev_score.n_bytes / res.dev_score.n_tokens
            to_bpb = 1 / dev_bytes_per_token / math.log(2)
            for h in res.history:
                curves.append(
                    {
                        "states": k,
                        "init": init,
                        "iteration": h["iteration"],
                        "train_nats_per_token": h["train_nats_per_token"],
                        "dev_nats_per_token": h["dev_nats_per_token"],
                        "dev_bits_per_byte": h["dev_nats_per_token"] * to_bpb,
                        "seconds": h["seconds"],
                    }
                )
            summary.append(
                {
                    "states": k,
                    "init": init,
                    "start_dev_bits_per_byte": res.history[0]["dev_nats_per_token"] * to_bpb,
                    "dev_bits_per_byte": res.dev_score.bits_per_byte,
                    "iterations": res.iterations,
                    "best_iteration": res.best_iteration,
                    "stop_reason": res.stop_reason,
                    "seconds": round(res.seconds, 1),
                    "smoothing": res.choices["smoothing"],
                }
            )
            log.info("K=%d %s: dev %.4f bits/byte", k, init, res.dev_score.bits_per_byte)
    return curves, summary


def start_curves_figure(curves: list[dict]) -> go.Figure:
    """Dev bits per byte against EM iteration: colour = start, dash = K."""
    fig = go.Figure()
    ks = sorted({c["states"] for c in curves})
    for i, k in enumerate(ks):
        for init, color in START_COLORS.items():
            pts = [c for c in curves if c["states"] == k and c["init"] == init]
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[c["iteration"] for c in pts],
                    y=[c["dev_bits_per_byte"] for c in pts],
                    mode="lines",
                    line=dict(color=color, dash=K_DASH[i % 4]),
                    name=f"{init}, K={k}",
                )
            )
    fig.update_layout(
        title="EM from each start: dev bits per byte by iteration (dev split of training)",
        xaxis_title="EM iteration",
        yaxis_title="dev bits per byte",
        template="plotly_white",
    )
    return fig


def run_starts(corpus, tokenizer_dir, cfg: StartsConfig, out_dir) -> tuple[Path, list[dict]]:
    """Write ``<out_dir>/<time>_starts/``: curves.csv, summary.csv/.md, starts.html."""
    from hmm_lang.atomic import write_text, write_yaml
    from hmm_lang.plots.export import save_figure
    from hmm_lang.pretokenize import pretokenize
    from hmm_lang.records import mark_complete, new_run_dir, write_environment
    from hmm_lang.stats import write_csv

    cfg.validate()
    if "lvd" in cfg.inits and cfg.run is not None:
        from hmm_lang.runs import check_run_split

        check_run_split(cfg.run, corpus)  # a run trained on our validation stories would leak
    train = pretokenize(corpus.train, tokenizer_dir)
    run_dir = new_run_dir(out_dir, "starts")
    write_yaml(
        run_dir / "config.yaml",
        {"corpus": corpus.describe(), "tokenizer": str(tokenizer_dir), "starts": asdict(cfg)},
    )
    write_environment(run_dir)
    curves, summary = start_curves(train, cfg)
    write_csv(run_dir / "curves.csv", curves)
    write_csv(run_dir / "summary.csv", summary)
    lines = ["| K | start | dev bits/byte at start | dev bits/byte | iterations | stop | seconds |"]
    lines.append("|---|---|---|---|---|---|---|")
    for s in summary:
        lines.append(
            f"| {s['states']} | {s['init']} | {s['start_dev_bits_per_byte']:.4f} | "
            f"{s['dev_bits_per_byte']:.4f} | {s['iterations']} | {s['stop_reason']} | "
            f"{s['seconds']} |"
        )
    write_text(run_dir / "summary.md", "\n".join(lines) + "\n")
    save_figure(start_curves_figure(curves), run_dir, "starts", png=False)
    mark_complete(run_dir)
    return run_dir, summary
