"""The stages of ``hmm-lang run``, in order. Each one is a thin call into the library.

Every stage writes into ``<run>/<stage>/`` and returns a small JSON-able result; figures are
saved as HTML plus a JSON copy that the final report embeds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hmm_lang.stage_runner import RunState, run_stage


def _save_figs(figs: dict, stage_dir: Path, html: bool = True) -> list[str]:
    """Write each figure's JSON (what the report embeds), and its HTML unless ``html=False``
    (when the library call that made it has already written the HTML)."""
    from hmm_lang.atomic import write_text
    from hmm_lang.plots.export import save_figure

    names = []
    for name, fig in figs.items():
        if html:
            save_figure(fig, stage_dir, name, png=False)
        write_text(stage_dir / f"{name}.json", fig.to_json())
        names.append(name)
    return names


def hmm_device(p) -> str:
    """Where dense EM runs: the profile's ``hmm_device``, ``auto`` meaning CUDA if present."""
    from hmm_lang.config import auto_cuda

    return auto_cuda(p.hmm_device)


def ladder_config(p, transformer_runs: list[str]):
    """The ladder of profile ``p`` (a :class:`~hmm_lang.profiles.Profile`): what the run's
    ladder stage and notebook 06 fit. The transformer runs' vocab sizes are added to the
    profile's ladder vocab sizes, so that every transformer has its row."""
    from hmm_lang.config import load_config
    from hmm_lang.experiments.ladder import LadderConfig

    runs = [load_config(Path(r) / "config.yaml").model.d_vocab for r in transformer_runs]
    vocab = tuple(sorted({*(p.ladder_vocab_sizes or p.vocab_sizes), *runs}))
    return LadderConfig(
        vocab_sizes=vocab,
        ngram_orders=(1, *p.ngram_orders),
        hmm_states=p.hmm_states,
        max_iters=p.hmm_max_iters,
        seeds=p.hmm_seeds,
        cloned_clones=p.cloned_clones,
        blocked_states=p.blocked_states,
        blocked_clusters=p.blocked_clusters,
        max_train_stories=p.hmm_train_stories,
        hmm_device=hmm_device(p),
        transformer_runs=list(transformer_runs),
    )


def stage_tokenizers(state: RunState) -> None:
    from hmm_lang.tokenizer import train_tokenizers

    def fn(stage_dir: Path) -> dict:
        p = state.profile
        dirs = train_tokenizers(
            state.corpus.train, p.vocab_sizes, state.tokenizers_dir,
            sample_stories=p.tokenizer_stories,
        )  # fmt: skip
        return {str(v): str(d) for v, d in dirs.items()}

    inputs = {"data": state.corpus.train.fingerprint(), "vocab": state.profile.vocab_sizes}
    if state.profile.tokenizer_stories is not None:  # keys of existing runs stay as they were
        inputs["sample"] = state.profile.tokenizer_stories
    run_stage(state, "tokenizers", inputs, fn)


def stage_token_stats(state: RunState) -> None:
    from hmm_lang.plots.token_stats import rank_frequency_figure
    from hmm_lang.stats import collect_token_stats, save_token_stats, stats_table

    def fn(stage_dir: Path) -> dict:
        stats = collect_token_stats(
            state.corpus.valid, state.tokenizers_dir, state.profile.vocab_sizes
        )
        fig = rank_frequency_figure(stats)
        save_token_stats(stats, stage_dir, fig)
        return {
            "table": stats_table(stats),
            "figures": _save_figs({"rank_frequency": fig}, stage_dir, html=False),
        }

    inputs = {
        "data": state.corpus.valid.fingerprint(),
        "vocab": state.profile.vocab_sizes,
        "tokenizers": state.keys["tokenizers"],
    }
    run_stage(state, "token_stats", inputs, fn)


def _transformer_config(state: RunState):
    from hmm_lang.config import apply_overrides, load_config
    from hmm_lang.tokenizer import hf_dir

    p = state.profile
    v = max(p.vocab_sizes)
    d = state.data_args
    items = [
        f"data.tokenizer={hf_dir(state.tokenizers_dir, v)}",
        f"data.data={d['data']}",
        f"data.split_seed={d['seed']}",
    ]
    if d["valid"] is not None:
        items.append(f"data.valid={d['valid']}")
    if d.get("valid_fraction", 0.1) != 0.1:  # left out at the default: earlier keys unchanged
        items.append(f"data.valid_fraction={d['valid_fraction']}")
    if d["data"] == "default":
        items.append(f"data.max_stories={p.synthetic_stories}")
    elif d["max_stories"] is not None:
        items.append(f"data.max_stories={d['max_stories']}")
    return apply_overrides(load_config(p.transformer_config), items + list(p.transformer_overrides))


def _same_config(run_dir: Path, cfg) -> bool:
    """Whether a killed run's config.yaml is ``cfg`` (its resolved d_vocab aside): a run of an
    older config is not continued but retrained."""
    import yaml

    from hmm_lang.transformer.checkpoints import config_diff

    saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return all(d.startswith("model.d_vocab:") for d in config_diff(saved, cfg.to_dict()))


def stage_transformer(state: RunState) -> None:
    from hmm_lang.transformer.checkpoints import latest_checkpoint
    from hmm_lang.transformer.train import train

    cfg = _transformer_config(state)

    def fn(stage_dir: Path) -> dict:
        # a killed stage left a run folder with checkpoints: continue it
        partial = [
            p.parent
            for p in sorted(stage_dir.glob("2*/config.yaml"))
            if not (p.parent / "final_model.pt").exists()
        ]
        if (
            partial
            and latest_checkpoint(partial[-1]) is not None
            and _same_config(partial[-1], cfg)
        ):
            run_dir = train(resume=partial[-1], progress=True)
        else:
            run_dir = train(cfg, stage_dir, progress=True)
        metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        last = [m for m in metrics if "valid_bits_per_byte" in m][-1]
        return {"run": str(run_dir), "valid_bits_per_byte": last["valid_bits_per_byte"]}

    # content, not paths: the corpus split and the tokenizers trained on it
    inputs = {
        "config": cfg.to_dict(),
        "data": state.corpus.fingerprint(),
        "tokenizers": state.keys["tokenizers"],
    }
    state.transformer_run = run_stage(state, "transformer", inputs, fn)["run"]


def stage_analysis(state: RunState) -> None:
    from hmm_lang.plots.run_figures import (
        circuit_figures,
        patterns_figure,
        pca_figures,
        similarity_figure,
    )
    from hmm_lang.plots.training import loss_curves_figure
    from hmm_lang.runs import load_run, run_streams, token_counts

    p = state.profile

    def fn(stage_dir: Path) -> dict:
        run = load_run(state.transformer_run)
        train, valid = run_streams(run)
        counts = token_counts(train, len(run.tokenizer))
        figs = {"loss_curves": loss_curves_figure(run.metrics, "transformer training")}
        for ordering in ("id", "frequency", "cluster"):
            figs[f"embed_similarity_{ordering}"] = similarity_figure(
                run.model, run.tokenizer, "embed", ordering, 8, counts, max_tokens=p.analysis_tokens
            )
        figs["unembed_similarity_frequency"] = similarity_figure(
            run.model,
            run.tokenizer,
            "unembed",
            "frequency",
            8,
            counts,
            max_tokens=p.analysis_tokens,
        )
        figs.update(circuit_figures(run.model, run.tokenizer, counts, 0, 0, 40))
        figs["attention_patterns"] = patterns_figure(run.model, run.tokenizer, valid.story(0))
        pcs = pca_figures(run.model, run.tokenizer, valid, counts, n_tokens=p.pca_tokens)
        figs.update(
            {
                k: v
                for k, v in pcs.items()
                if k in ("pca_explained_variance", "pca2d_log10_frequency", "pca3d_position")
            }
        )
        return {"figures": _save_figs(figs, stage_dir)}

    run_stage(
        state,
        "analysis",
        {"transformer": state.keys["transformer"], "p": [p.analysis_tokens, p.pca_tokens]},
        fn,
    )


def stage_ladder(state: RunState) -> None:
    from hmm_lang.atomic import write_text
    from hmm_lang.experiments.ladder import ladder_rows, markdown_table
    from hmm_lang.plots.ladder import ladder_figure, seconds_figure
    from hmm_lang.stats import write_csv

    p = state.profile
    cfg = ladder_config(p, [state.transformer_run])

    def fn(stage_dir: Path) -> dict:
        # finished HMM fits are kept in fits/: a killed run resumes its ladder mid-way
        fits = stage_dir / "fits"
        if state.force:
            shutil.rmtree(fits, ignore_errors=True)
        rows = ladder_rows(state.corpus, state.tokenizers_dir, cfg, fits_dir=fits)
        write_csv(stage_dir / "ladder.csv", rows)
        write_text(stage_dir / "ladder.md", markdown_table(rows))
        figs = {"ladder": ladder_figure(rows), "ladder_seconds": seconds_figure(rows)}
        return {"rows": rows, "figures": _save_figs(figs, stage_dir)}

    # the device as the profile names it ("auto" hashes alike on any machine), left out when
    # it is "cpu" so that the keys of earlier runs stay as they were
    key = {**cfg.__dict__, "transformer_runs": [], "hmm_device": p.hmm_device}
    if key["hmm_device"] == "cpu":
        del key["hmm_device"]
    inputs = {
        "data": state.corpus.fingerprint(),
        "tokenizers": state.keys["tokenizers"],
        "transformer": state.keys["transformer"],
        "cfg": json.loads(json.dumps(key, default=list)),
    }
    state.results = run_stage(state, "ladder", inputs, fn)["rows"]


def stage_beliefs(state: RunState) -> None:
    from hmm_lang.experiments.beliefs import run_beliefs

    p = state.profile

    def fn(stage_dir: Path) -> dict:
        out, rows, kl, figs = run_beliefs(
            state.transformer_run,
            None,
            stage_dir,
            p.belief_states,
            p.hmm_max_iters,
            p.belief_tokens,
            k_folds=p.belief_k_folds,
            n_boot=p.belief_boot,
            top_tokens=p.belief_top_tokens,
            max_train_stories=p.hmm_train_stories,
            device=hmm_device(p),
        )
        return {
            "rows": rows,
            "kl": kl,
            "folder": str(out),
            "figures": _save_figs(figs, stage_dir, html=False),
        }

    run_stage(
        state,
        "beliefs",
        {
            "transformer": state.keys["transformer"],
            "p": [p.belief_states, p.hmm_max_iters, p.belief_tokens, p.belief_k_folds],
            "q": [p.belief_boot, p.belief_top_tokens, 2],  # 2: the probe protocol's version
            "h": [p.hmm_train_stories],
        },
        fn,
    )


def stage_report(state: RunState) -> None:
    from hmm_lang.report import write_report

    write_report(state.run_dir, summary_markdown(state))


STAGES = [
    stage_tokenizers,
    stage_token_stats,
    stage_transformer,
    stage_analysis,
    stage_ladder,
    stage_beliefs,
]


def summary_markdown(state: RunState) -> str:
    """The final summary: bits per byte of every model, wall time per stage."""
    lines = [f"# hmm-lang run: {state.run_dir.name}", "", f"corpus: {state.corpus.describe()}", ""]
    if state.results:
        lines += [
            "| model | vocab | parameters | bits/token | bits/byte [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for r in sorted(state.results, key=lambda r: (r["vocab_size"], -r["bits_per_byte"])):
            ci = f" [{r['bpb_lo']:.4f}, {r['bpb_hi']:.4f}]" if "bpb_lo" in r else ""
            lines.append(
                f"| {r['model']} | {r['vocab_size']} | {r['n_parameters']:,} | {r['bits_per_token']:.4f} | "
                f"{r['bits_per_byte']:.4f}{ci} |"
            )
        lines.append("")
    lines += ["| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in state.timings.items()]
    return "\n".join(lines) + "\n"
