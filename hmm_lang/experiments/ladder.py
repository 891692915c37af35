"""The ladder: bits per byte of every model family on one validation text, per tokenizer.

Unigram, Kneser-Ney 2..5-grams, dense HMMs, cloned HMMs and trained transformers, each scored
on the same validation stories (bits per UTF-8 byte), against their number of parameters.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from hmm_lang.corpus import Corpus
from hmm_lang.hmm.fit import HMMFitConfig, fit_hmm
from hmm_lang.ngram import fit_and_score
from hmm_lang.pretokenize import pretokenize
from hmm_lang.tokenizer import BOS, hf_dir, load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class LadderConfig:
    vocab_sizes: tuple[int, ...] = (1024, 2048, 4096)
    ngram_orders: tuple[int, ...] = (1, 2, 3, 4, 5)
    hmm_states: tuple[int, ...] = (16, 64, 256, 1024)
    hmm_iters: int = 10
    cloned_clones: tuple[int, ...] = (1, 4, 16)
    cloned_iters: int = 10
    max_train_stories: int | None = None  # HMM training stories (None: all)
    transformer_runs: list[str] = field(default_factory=list)


def _row(family, model, v, n_params, score, seconds, states=None, run=None) -> dict:
    return {
        "family": family,
        "model": model,
        "vocab_size": v,
        "n_parameters": int(n_params),
        "bits_per_byte": score.bits_per_byte,
        "bits_per_token": score.bits_per_token,
        "seconds": round(seconds, 2),
        "states": states,
        "run": run,
    }


def ladder_rows(corpus: Corpus, tokenizers_dir: str | Path, cfg: LadderConfig) -> list[dict]:
    """Fit and score every model of the ladder; one row per model."""
    rows = []
    for v in cfg.vocab_sizes:
        tok_dir = hf_dir(tokenizers_dir, v)
        train, valid = pretokenize(corpus.train, tok_dir), pretokenize(corpus.valid, tok_dir)
        bos = load_tokenizer(tok_dir).convert_tokens_to_ids(BOS)
        for order in cfg.ngram_orders:
            model, sc, secs = fit_and_score(train, valid, order, bos)
            name = "unigram" if order == 1 else f"KN {order}-gram"
            rows.append(
                _row("unigram" if order == 1 else "n-gram", name, v, model.n_parameters, sc, secs)
            )
            log.info("V=%d %s: %.4f bits/byte", v, name, sc.bits_per_byte)
        for k in cfg.hmm_states:
            res = fit_hmm(
                train,
                valid,
                HMMFitConfig(
                    states=k, iters=cfg.hmm_iters, max_train_stories=cfg.max_train_stories
                ),
            )
            rows.append(
                _row(
                    "dense HMM",
                    f"HMM K={k}",
                    v,
                    res.model.n_parameters,
                    res.valid_score,
                    res.seconds,
                    states=k,
                )
            )
            log.info("V=%d HMM K=%d: %.4f bits/byte", v, k, res.valid_score.bits_per_byte)
        for c in cfg.cloned_clones:
            hc = HMMFitConfig(
                cloned=True,
                clones=c,
                iters=cfg.cloned_iters,
                max_train_stories=cfg.max_train_stories,
            )
            res = fit_hmm(train, valid, hc)
            name = f"cloned HMM {res.model.n_states} states"
            rows.append(
                _row(
                    "cloned HMM",
                    name,
                    v,
                    res.model.n_parameters,
                    res.valid_score,
                    res.seconds,
                    states=res.model.n_states,
                )
            )
            log.info("V=%d %s: %.4f bits/byte", v, name, res.valid_score.bits_per_byte)
    rows += transformer_rows(corpus, cfg.transformer_runs)
    return rows


def transformer_rows(corpus: Corpus, runs: list[str]) -> list[dict]:
    """Score trained transformer runs on the corpus's validation stories (their own tokenizer)."""
    from hmm_lang.runs import load_run
    from hmm_lang.transformer.data import evaluate
    from hmm_lang.transformer.train import fast_logits

    rows = []
    for path in runs:
        run = load_run(path)
        valid = pretokenize(corpus.valid, run.path / "tokenizer")
        bos = run.tokenizer.convert_tokens_to_ids(BOS)
        t0 = time.perf_counter()
        sc = evaluate(fast_logits(run.model), valid, bos, run.config.model.n_ctx, run.device)
        m = run.config.model
        rows.append(
            _row(
                "transformer",
                f"transformer {m.n_layers}L d{m.d_model}",
                len(run.tokenizer),
                run.model.n_parameters(),
                sc,
                time.perf_counter() - t0,
                run=str(run.path),
            )
        )
    return rows


FAMILY_COLORS = {
    "unigram": "#7f7f7f",
    "n-gram": "#1f77b4",
    "dense HMM": "#d62728",
    "cloned HMM": "#ff7f0e",
    "transformer": "#2ca02c",
}
VOCAB_MARKERS = {1024: "circle", 2048: "square", 4096: "diamond"}


def ladder_figure(rows: list[dict]) -> go.Figure:
    """Bits per byte against parameters (log x): colour = family, marker = vocab size."""
    fig = go.Figure()
    for family, color in FAMILY_COLORS.items():
        for v, marker in VOCAB_MARKERS.items():
            pts = [r for r in rows if r["family"] == family and r["vocab_size"] == v]
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r["n_parameters"] for r in pts],
                    y=[r["bits_per_byte"] for r in pts],
                    mode="markers+lines",
                    marker=dict(color=color, symbol=marker, size=10),
                    line=dict(color=color, width=1, dash="dot"),
                    name=f"{family}, V={v}",
                    text=[r["model"] for r in pts],
                    hovertemplate="%{text}<br>%{x:,} parameters<br>%{y:.4f} bits/byte<extra>V="
                    + str(v)
                    + "</extra>",
                )
            )
    fig.update_layout(
        title="bits per byte on the validation stories",
        xaxis_title="parameters",
        yaxis_title="bits per byte",
        xaxis_type="log",
        template="plotly_white",
    )
    return fig


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| vocab | family | model | parameters | bits/byte | bits/token | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["vocab_size"], -r["bits_per_byte"])):
        lines.append(
            f"| {r['vocab_size']} | {r['family']} | {r['model']} | {r['n_parameters']:,} | "
            f"{r['bits_per_byte']:.4f} | {r['bits_per_token']:.4f} | {r['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def run_ladder(
    corpus: Corpus, tokenizers_dir, cfg: LadderConfig, out_dir
) -> tuple[Path, list[dict]]:
    """Train tokenizers if needed, run the ladder, write ``<out_dir>/<time>_ladder/``."""
    from dataclasses import asdict

    from hmm_lang.atomic import write_text, write_yaml
    from hmm_lang.plots.export import save_figure
    from hmm_lang.records import new_run_dir, write_environment
    from hmm_lang.stats import write_csv
    from hmm_lang.tokenizer import train_tokenizers

    run_dir = new_run_dir(out_dir, "ladder")
    write_yaml(run_dir / "config.yaml", {"corpus": corpus.describe(), "ladder": asdict(cfg)})
    write_environment(run_dir)
    train_tokenizers(corpus.train, cfg.vocab_sizes, tokenizers_dir)
    rows = ladder_rows(corpus, tokenizers_dir, cfg)
    write_csv(run_dir / "ladder.csv", rows)
    write_text(run_dir / "ladder.md", markdown_table(rows))
    save_figure(ladder_figure(rows), run_dir, "ladder", png=False)
    return run_dir, rows
