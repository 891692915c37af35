"""The stages of ``hmm-lang run``, in order. Each one is a thin call into the library."""

from __future__ import annotations

from pathlib import Path

from hmm_lang.pipeline import RunState, run_stage


def stage_tokenizers(state: RunState) -> None:
    from hmm_lang.tokenizer import train_tokenizers

    def fn(stage_dir: Path) -> dict:
        dirs = train_tokenizers(state.corpus.train, state.profile.vocab_sizes, state.tokenizers_dir)
        return {str(v): str(d) for v, d in dirs.items()}

    inputs = {"data": state.corpus.train.fingerprint(), "vocab": state.profile.vocab_sizes}
    run_stage(state, "tokenizers", inputs, fn)


def stage_token_stats(state: RunState) -> None:
    from hmm_lang.stats import collect_token_stats, save_token_stats, stats_table

    def fn(stage_dir: Path) -> dict:
        stats = collect_token_stats(
            state.corpus.valid, state.tokenizers_dir, state.profile.vocab_sizes
        )
        save_token_stats(stats, stage_dir)
        return {"table": stats_table(stats)}

    inputs = {"data": state.corpus.valid.fingerprint(), "vocab": state.profile.vocab_sizes}
    run_stage(state, "token_stats", inputs, fn)


STAGES = [stage_tokenizers, stage_token_stats]


def summary_markdown(state: RunState) -> str:
    """The final summary: bits per byte of every model, wall time per stage."""
    lines = [f"# hmm-lang run: {state.run_dir.name}", "", f"corpus: {state.corpus.describe()}", ""]
    if state.results:
        lines += ["| model | vocab | bits/token | bits/byte |", "|---|---|---|---|"]
        for r in state.results:
            lines.append(
                f"| {r['model']} | {r['vocab_size']} | {r['bits_per_token']:.4f} | "
                f"{r['bits_per_byte']:.4f} |"
            )
        lines.append("")
    lines += ["| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in state.timings.items()]
    return "\n".join(lines) + "\n"
