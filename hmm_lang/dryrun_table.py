"""The dry run's plan as text: a table of every stage (where it runs, peak RAM and GPU memory,
time, sizes) with totals, and the assumptions behind the numbers."""

from __future__ import annotations

from hmm_lang import estimate as E
from hmm_lang.dryrun import RunPlan, _mem, _n, _size, _time


def format_plan(plan: RunPlan) -> str:
    """The plan as a table (stage, where, peak RAM, peak GPU memory, time, sizes) with totals,
    and the assumptions behind the numbers."""
    d = plan.data
    toks = ", ".join(
        f"V={v} {_n(d.train_tokens(v))} / {_n(d.valid_tokens(v))}" for v in plan.vocab_sizes
    )
    lines = [
        f"hmm-lang run --profile {plan.profile} --dry-run: ESTIMATES, nothing was run",
        f"data: {d.name}, {d.how}",
        f"  train {d.train_stories:,} stories, {_size(d.train_bytes)}; "
        f"valid {d.valid_stories:,} stories, {_size(d.valid_bytes)}",
        f"  tokens (train / valid): {toks}",
        "",
    ]
    row = "{:<17} {:<8} {:>9} {:>9} {:>10}  {}"
    rule = "-" * 100
    lines += [row.format("stage", "where", "peak RAM", "peak GPU", "time", "sizes"), rule]
    for s in plan.stages:
        lines.append(
            row.format(s.name, s.device, _mem(s.ram), _mem(s.gpu), _time(s.seconds), s.sizes)
        )
        for p in s.parts if len(s.parts) > 1 else ():
            lines.append(
                row.format(
                    f"  {p.name}", p.device, _mem(p.ram), _mem(p.gpu), _time(p.seconds), p.what
                )
            )
    lines += [
        rule,
        row.format("total", "", _mem(plan.ram), _mem(plan.gpu), _time(plan.seconds), ""),
    ]
    rate = "an ASSUMPTION, not measured" if E.GPU.assumed else "measured"
    lines += [
        "",
        "Estimates, nothing was run: no stage ran, no folder was created, no tokenizer was",
        "trained, nothing was downloaded. hmm_lang/estimate.py names the source of each constant.",
        f"* CPU: {E.CPU.flops:.0e} FLOP/s and rates measured on the project's 2-core machine (more",
        "  cores: faster). Dense EM runs on the GPU where the profile says (gpu: hmm_device auto);",
        "  cloned and blocked HMMs, n-grams, analysis and probes run on the CPU in every profile.",
        f"* GPU: {E.GPU.flops:.0e} FLOP/s for one H100/H200-class GPU (bf16), {rate}. Its memory:",
        "  weights, gradients, AdamW moments and hmm_lang.memory's step estimate (float32",
        "  activations, fused attention without patterns, as train's memory check assumes).",
        f"* EM stops on the dev split: ~{E.EM_ITERS} iterations assumed for dense HMMs, "
        f"~{E.BLOCK_EM_ITERS} for cloned and",
        "  blocked ones (converged fits in docs/results); a fit that runs to its cap takes longer.",
        "* Tokens from measured bytes per token; distinct n-grams extrapolated by Heaps' law.",
        "* Peak RAM leaves out token streams: memory-mapped uint16 files (2 bytes per token).",
        "* A rerun reuses finished stages and identical tokenizers: this is a fresh run's cost.",
    ]
    if plan.notes:
        lines += ["", "Warnings:"] + [f"* {n}" for n in plan.notes]
    return "\n".join(lines)
