"""The probe table of ``benchmarks/reliability_probes.py``, with its setups, checks and fixtures.

``probes()`` lists the 212 probes (bad values and configs, resume, corrupt and unwritable
inputs, SIGKILL, Ctrl-C, reuse), each with the outcomes it should end in; the setups and
checks they use; ``build_fixtures()`` makes the tokenizers, runs and HMMs every probe folder
starts as a copy of. The runner, classification and report live in reliability_probes.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from reliability_probes import (
    DEV,
    FX,
    STATE,
    TIMEOUT,
    Check,
    Ctx,
    Outcome,
    Probe,
    Res,
    Setup,
    after,
    appears,
    bad,
    good,
    out,
    signalled,
    snapshot,
    verdict,
    wait_until,
)

EOT = "<|endoftext|>"
T = "tok/HF_custom_tokenizer_1024"  # every probe folder holds a copy of the fixture tokenizers


# ---- setups and checks ---------------------------------------------------------------------
def edit(rel: str, text: str | bytes | None = None, cut: int | None = None, rm: bool = False,
         mode: int | None = None, mkdir: bool = False, sub: tuple[str, str] | None = None) -> Setup:  # fmt: skip
    """Write, truncate, remove, regex-substitute or chmod every path matching ``rel``."""

    def fn(ctx: Ctx) -> None:
        for p in sorted(ctx.d.glob(rel)) if "*" in rel else [ctx.d / rel]:
            p.mkdir(parents=True, exist_ok=True) if mkdir else None
            if rm:
                p.unlink() if p.is_file() else shutil.rmtree(p)
            if sub:
                new, n = re.subn(sub[0], sub[1], p.read_text())
                assert n == 1, f"{sub[0]!r} not in {rel}"  # else the probe would test nothing
                p.write_text(new)
            p.write_bytes(text if isinstance(text, bytes) else text.encode()) if text is not None else None  # fmt: skip
            p.write_bytes(p.read_bytes()[:cut]) if cut is not None else None
            p.chmod(mode) if mode is not None else None

    return fn


def stories(ctx: Ctx) -> list[str]:
    return [s.strip() for s in (ctx.d / "stories.txt").read_text().split(EOT) if s.strip()]


def jsonl(name: str, broken: dict[int, str] | None = None, n: int = 40, tail: str = "\n") -> Setup:
    """``n`` stories as JSON lines; ``broken`` replaces file lines ("" inserts a blank line)."""

    def fn(ctx: Ctx) -> None:
        lines = [json.dumps({"text": s}) for s in stories(ctx)[:n]]
        for i, text in sorted((broken or {}).items()):
            lines.insert(i - 1, text) if text == "" else lines.__setitem__(i - 1, text)
        (ctx.d / name).write_text("\n".join(lines) + tail)

    return fn


def parquet(name: str, column: str = "text") -> Setup:
    def fn(ctx: Ctx) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({column: stories(ctx)}), ctx.d / name)

    return fn


def bits(res: Res) -> str:
    return (re.findall(r"([\d.]+) bits/byte", res.out) or ["?"])[-1]


def same_bits(warn: str = "") -> Check:
    """The n-gram's bits/byte equal the fixture's, fault or not (and ``warn`` was logged)."""
    return lambda c, r: (f"no warning {warn!r}" if warn not in r.err else None if bits(r) == FX["bits"] else f"{bits(r)} bits/byte, {FX['bits']} without the fault")  # fmt: skip


def exists(pattern: str) -> Check:
    return lambda c, r: None if any(c.d.glob(pattern)) else f"{pattern} missing"


def resumed(ctx: Ctx, res: Res) -> str | None:
    run = ctx.d / res.out.split("run folder:")[-1].strip()
    if not (run / "final_model.pt").exists() or (run / ".incomplete").exists():
        return f"{run.name} is not finished"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return None if all(json.loads(ln) for ln in lines) else "metrics.jsonl has a broken line"


def stage_log(res: Res, word: str) -> list[str]:
    return re.findall(rf"stage (\w+): {word}", res.err)


RUN = "run --profile smoke --data big.txt --out-dir out --tokenizers-dir rtok"


def use_smoke(keep_out: bool = True) -> Setup:
    """A copy of one finished smoke run (made on first use, about 1.5 minutes)."""

    def fn(ctx: Ctx) -> None:
        src, n = STATE["base"] / "smoke", STATE["n_big"]
        if not (src / "out").exists():
            src.mkdir(exist_ok=True)
            write_txt(src / "big.txt", STATE["pool"][:n])
            write_txt(src / "big2.txt", STATE["pool"][n : 2 * n])
            fixture_ok(Ctx(src).run(RUN))
        shutil.copytree(src, ctx.d, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        shutil.rmtree(ctx.d / "out") if not keep_out else None

    return fn


def same_size_edit(ctx: Ctx) -> None:
    """One letter of big.txt changed, its size and mtime kept: only the content differs."""
    p = ctx.d / "big.txt"
    st, raw = p.stat(), p.read_bytes()
    p.write_bytes(raw.replace(b" the ", b" The ", 1))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def lock_probe(ctx: Ctx) -> Outcome:
    """Two `hmm-lang run` on one out-dir: the second must wait, or stop with a message."""
    use_smoke(keep_out=False)(ctx)
    p1, finish1 = ctx.start(RUN)
    wait_until(p1, lambda: appears("out/*_run/stages/tokenizers.json")(ctx.d), 200.0)
    before = snapshot(ctx.d)
    p2, finish2 = ctx.start(RUN)
    if wait_until(p2, lambda: False, 60.0) or p2.poll() is not None:
        o = verdict(
            ctx, finish2(TIMEOUT), "error", before, "another|lock|running", watch="out/*_run*"
        )
    else:
        p2.kill()
        o = out("recovered", finish2(TIMEOUT), "the second run waits for the first")
    p1.kill()
    finish1(30.0)
    return o


# ---- the probes ----------------------------------------------------------------------------

FIT = f"fit-hmm --data stories.txt --tokenizer {T} --states 8 --iters 2 --out-dir out"
NGRAM = f"ngram --data stories.txt --tokenizer {T} --order 2 --out-dir out"
TRAIN = f"train --config tiny --data stories.txt --tokenizer {T} --out-dir out"
LADDER = "experiment ladder --data stories.txt --tokenizers-dir tok --vocab-sizes 1024 --orders 2 --states 4 --clones --seeds 0 --max-iters 2 --n-boot 20 --out-dir out"  # fmt: skip
LONG_LADDER = LADDER.replace("--states 4", "--states 16").replace("--max-iters 2", "--max-iters 30")
BELIEFS, TOKS = "experiment beliefs --run runs/done --smoke --out-dir out", "tokenizers --data stories.txt --vocab-sizes 1024 --out-dir newtok"  # fmt: skip
STARTS = f"experiment starts --data stories.txt --tokenizer {T} --states 4 --inits split --max-iters 2 --out-dir out"  # fmt: skip
SAMPLE = f"experiment sample --hmm hmms/hmm8/model.pt --tokenizer {T} --stories 20 --max-len 64 --out sampled"  # fmt: skip
ANALYZE, RESUME = "analyze runs/done --no-png --max-tokens 64 --pca-tokens 200", "train --resume part/part"  # fmt: skip
SMOKE300 = "run --profile smoke --data stories.txt --out-dir out --tokenizers-dir rtok"
LONG_FIT = f"fit-hmm --data stories.txt --tokenizer {T} --states 64 --iters 300 --tol 0 --out-dir out"  # fmt: skip
LONG_TRAIN = TRAIN + " train.steps=400 train.checkpoint_interval=20 train.eval_interval=200"
RO, AFILE = edit("ro", mkdir=True, mode=0o555), edit("afile", "x")
CACHE, BIG = f"{T}/pretokenized/*", "word " * 10_000_000  # a 50 MB story on one line
CACHE_TMP = f"{T}/pretokenized/.*.tmp/tokens.u16"
STALE = f".step_0000020.pt.{re.sub(r'[^A-Za-z0-9_]', '_', socket.gethostname())}-99999999.x1.tmp"
RETOK = "tokenizers --data stories.txt --vocab-sizes 1024 --out-dir tok"
tok_tmp = lambda which, out="tok": appears(f"{out}/.{which}custom_tokenizer_1024.*.tmp/*")  # noqa: E731
into = lambda cmd, where: cmd.replace("--out-dir out", f"--out-dir {where}")  # noqa: E731
on = lambda cmd, data: cmd.replace("stories.txt", data)  # noqa: E731
latest_resume = lambda d: "train --resume " + str(sorted(d.glob("out/*"))[-1].relative_to(d))  # noqa: E731


def probes() -> list[Probe]:
    rows: list[Probe] = []

    def add(cls: str, desc: str, fn: Callable[[Ctx], Outcome], *expect: str) -> None:
        n = sum(p.cls == cls for p in rows) + 1
        rows.append(Probe(f"{cls}-{n:02d}", cls, desc, fn, expect or ("clean_error",)))

    # fmt: off
    for flag, must in [("--smoothing -1", "smoothing|pseudocount"), ("--smoothing nan", "smoothing|pseudocount"), ("--max-train-stories -1", "max.train.stories"), ("--max-train-stories 0", "max.train.stories"), ("--states 0", "states"), ("--states -5", "states"), ("--iters 0", "iter"), ("--patience -1", "patience"), ("--tol nan", "tol"), ("--restarts 0", "restarts"), ("--dev-fraction 1.5", "dev"), ("--cloned --clones 0", "clones"), ("--blocked --states 100 --clusters 64", "cluster|states"), ("--blocked --clusters 0", "cluster"), ("--init bogus", "init"), ("--init lvd", "run"), ("--device cuda", "cuda"), ("--device tpu", "device"), ("--online --minibatch-stories 0", "minibatch"), ("--cloned --escape 1.5", "escape"), ("--blocked --states 64 --clusters 8 --train grad --lr -1", "lr"), ("--blocked --states 64 --clusters 8 --train grad --state-dropout 1.5", "dropout"), ("--max-stories 0", "max.stories"), ("--valid-fraction 0", "valid"), ("--tokenizer no_such_tok", "no_such_tok"), ("--config no_such.yaml", "no_such.yaml"), ("--data no_such.txt", "no_such.txt")]:
        add("values", f"fit-hmm {flag}", bad(f"{FIT} {flag}", must))
    add("values", "fit-hmm --states 100000: a memory error at once", bad(f"{FIT} --states 100000", "memory|GiB", max_s=45))
    add("values", "fit-hmm --config with an unknown key", bad(f"{FIT} --config h.yaml", "nonsense_key", edit("h.yaml", "nonsense_key: 3\n")))
    for flag in ("--order 0", "--order -2"):
        add("values", f"ngram {flag}", bad(f"{NGRAM} {flag}", "order"))
    for flag, must in [("--orders 0", "order"), ("--vocab-sizes 10", "vocab"), ("--n-boot 1", "boot"), ("--blocked-states 100 --blocked-clusters 64", "blocked|cluster"), ("--states 0", "states"), ("--states -4", "states"), ("--clones 0", "clones"), ("--max-iters 0", "iter"), ("--max-train-stories 0", "max.train.stories"), ("--blocked-states 64 --blocked-block-size 0", "block"), ("--runs no_such_run", "no_such_run"), ("--tokenizers-dir stories.txt", "stories.txt"), ("--tol nan", "tol")]:
        add("values", f"experiment ladder {flag}", bad(f"{LADDER} {flag}", must))
    for flag, must in [("--tokens 0", "tokens"), ("--k-folds 2", "k.folds"), ("--n-boot 5", "boot"), ("--states 0", "states"), ("--top-tokens 0", "top.tokens"), ("--hmm no_such.pt", "no_such.pt"), ("--run no_such_run", "no_such_run"), ("--hmm hmms/hmm8_2048/model.pt", "vocab|tokenizer")]:
        add("values", f"experiment beliefs {flag}", bad(f"{BELIEFS} {flag}", must))
    add("values", "experiment beliefs with no trained run", bad("experiment beliefs --smoke --out-dir out", "no trained run"))
    for flag, must in [("--states 0", "states"), ("--inits bogus", "bogus|init"), ("--inits lvd", "run"), ("--max-iters 0", "iter")]:
        add("values", f"experiment starts {flag}", bad(f"{STARTS} {flag}", must))
    for flag, must in [("--stories 0", "stories"), ("--max-len 0", "max.len"), ("--out tok", "tok"), ("--out stories.txt", "stories.txt"), (f"--tokenizer {T.replace('1024', '2048')}", "vocab|tokenizer"), ("--hmm runs/done/final_model.pt", "hmm")]:
        add("values", f"experiment sample {flag}", bad(f"{SAMPLE} {flag}", must))
    for flag, must in [("--vocab-sizes 100", "vocab|260"), ("--vocab-sizes 0", "vocab|260"), ("--vocab-sizes 100000", "vocab|supports only"), ("--vocab-sizes 1024 70000", "70000|65536|vocab"), ("--max-stories 0", "max.stories"), ("--valid-fraction 1.5", "valid")]:
        add("values", f"tokenizers {flag}", bad(f"{TOKS} {flag}", must))
    add("values", "stats --vocab-sizes 100", bad("stats --data stories.txt --vocab-sizes 100 --tokenizers-dir tok --out st", "vocab|260"))
    for flag, must in [("--k 0", "k"), ("--top-n 0", "top.n"), ("--max-tokens 0", "max.tokens"), ("--pca-tokens 0", "pca")]:
        add("values", f"analyze {flag}", bad(f"{ANALYZE} {flag}", must))
    add("values", "analyze a missing run", bad("analyze no_such_run --no-png", "no_such_run"))
    add("values", "analyze --records-dir with no run in it", bad("analyze --records-dir empty --no-png", "no trained run", edit("empty", mkdir=True)))
    add("values", "analyze an unfinished (killed) run: refused, or a warning", good("analyze part/part --no-png", lambda c, r: None if re.search("unfinished|incomplete|checkpoint", r.err, re.I) else "no word that the run is unfinished"), "recovered", "clean_error")
    add("values", "notebooks --only an unknown notebook", bad("notebooks --run runs/done --only 99_no_such", "99_no_such"))
    add("values", "run --max-stories 1", bad(f"{SMOKE300} --max-stories 1", "max.stories|stories"))
    add("values", "run --valid-fraction 0", bad(f"{SMOKE300} --valid-fraction 0", "valid"))
    add("values", "run --profile smoke on 300 stories (too few for V=4096)", bad(SMOKE300, "vocab|stories"))
    add("values", "run --dry-run --data no_such.txt", bad("run --dry-run --data no_such.txt --out-dir out", "no_such.txt"))
    add("values", "run --dry-run creates no folder", good(f"{SMOKE300} --dry-run", lambda c, r: "created out/" if (c.d / "out").exists() else None), "recovered")
    for key, must in [("model.n_layers=-1", "n_layers"), ("model.d_model=0", "d_model"), ("model.n_heads=0", "n_heads"), ("model.d_head=-3", "d_head"), ("model.n_ctx=0", "n_ctx"), ("model.n_ctx=1", "n_ctx"), ("train.eval_interval=0", "eval_interval"), ("train.lr=nan", "lr"), ("train.lr=-1", "lr"), ("train.lr=inf", "lr"), ("train.min_lr=1", "min_lr"), ("train.steps=0", "steps"), ("train.batch_tokens=0", "batch_tokens"), ("train.warmup_steps=-1", "warmup"), ("train.grad_clip=0", "grad_clip"), ("train.beta1=1.5", "beta"), ("train.weight_decay=-1", "weight_decay"), ("train.eval_stories=0", "eval_stories"), ("train.checkpoint_interval=0", "checkpoint_interval"), ("train.device=cuda", "cuda"), ("train.device=tpu", "device"), ("model.act_fn=swish", "act_fn"), ("model.normalization=BN", "normalization"), ("data.valid_fraction=0", "valid_fraction"), ("model.foo=1", "foo"), ("train.steps=abc", "steps"), ("steps", "steps"), ("train.batch_tokens=32", "batch_tokens"), ("train.max_tokens=10", "max_tokens"), ("--max-stories 1", "max.stories"), ("--data no_such.txt", "no_such.txt"), ("--tokenizer no_such_tok", "no_such_tok")]:
        add("config", f"train {key}", bad(f"{TRAIN} {key}", must))
    add("config", "train train.batch_tokens=1e11: a memory error at once", bad(f"{TRAIN} train.batch_tokens=100000000000", "memory|GiB", max_s=45))
    for text, must in [("model: {n_layers: -2}\n", "n_layers"), ("- 1\n- 2\n", "mapping|section"), ("model: [\n", "YAML"), ("train: {lr: .nan}\n", "lr"), ("train: {eval_interval: 0}\n", "eval_interval")]:
        add("config", f"train --config file {text.strip()!r}", bad(TRAIN.replace("--config tiny", "--config c.yaml"), must, edit("c.yaml", text)))
    add("resume", "resume after a half-written last metrics line", good(RESUME, resumed, lambda c: open(c.d / "part/part/metrics.jsonl", "a").write('{"step": 11, "loss": 3.1')), "recovered")
    add("resume", "resume after config.yaml was edited (lr)", bad(RESUME, "lr", edit("part/part/config.yaml", sub=(r"(?m)^  lr: .*$", "  lr: 0.001"))))
    add("resume", "resume with a garbage config.yaml", bad(RESUME, "config", edit("part/part/config.yaml", "model: [\n")))
    add("resume", "resume after the corpus changed under the same path", bad(RESUME, "training stories|changed", lambda c: shutil.copy(c.d / "other.txt", c.d / "stories.txt")))
    add("resume", "resume after the corpus was only touched (same content)", good(RESUME, resumed, lambda c: os.utime(c.d / "stories.txt", (1e9, 1e9))), "recovered")
    add("resume", "resume after the run's tokenizer was swapped", bad(RESUME, "tokenizer|vocab", [edit("part/part/tokenizer", rm=True), lambda c: shutil.copytree(c.d / T.replace("1024", "2048"), c.d / "part/part/tokenizer")]))
    add("resume", "resume with a truncated last checkpoint", bad(RESUME, "step_0000010", edit("part/part/checkpoints/step_0000010.pt", cut=1000)))
    add("resume", "resume with a garbage inputs.json", bad(RESUME, "inputs.json", edit("part/part/inputs.json", "{nope")))
    add("resume", "resume a folder that is not a run", bad("train --resume tok", "tok"))
    add("resume", "resume a missing folder", bad("train --resume no_such_run", "no_such_run"))
    add("resume", "resume after its data file was deleted", bad(RESUME, "stories.txt", edit("stories.txt", rm=True)))
    add("resume", "resume with a killed writer's checkpoint .tmp", good(RESUME, resumed, edit(f"part/part/checkpoints/{STALE}", "half")), "recovered")
    add("resume", "resume a finished run", good("train --resume runs/done", resumed), "recovered", "clean_error")
    add("corrupt", "fit-hmm with a truncated tokenizer.json", bad(FIT, "tokenizer", edit(f"{T}/tokenizer.json", cut=100)))
    add("corrupt", "ngram with a garbage tokenizer.json", bad(NGRAM, "tokenizer", edit(f"{T}/tokenizer.json", b"\x00\xffgarbage")))
    add("corrupt", "train with an empty tokenizer.json", bad(TRAIN, "tokenizer", edit(f"{T}/tokenizer.json", "")))
    add("corrupt", "fit-hmm with tokenizer.json removed", bad(FIT, "tokenizer.json", edit(f"{T}/tokenizer.json", rm=True)))
    add("corrupt", "train with a garbage tokenizer_config.json", bad(TRAIN, "tokenizer", edit(f"{T}/tokenizer_config.json", "{nope")))
    add("corrupt", "tokenizers rerun over a garbage hmm_lang.json", good(RETOK, lambda c, r: None if json.loads((c.d / T / "hmm_lang.json").read_text()) else "?", edit(f"{T}/hmm_lang.json", "{nope")), "recovered")
    add("corrupt", "tokenizers rerun over a truncated tokenizer.json", good(RETOK, lambda c, r: None if json.loads((c.d / T / "tokenizer.json").read_text()) else "?", edit(f"{T}/tokenizer.json", cut=100)), "recovered", "clean_error")
    for f, how in [("tokens.u16", {"cut": 50}), ("meta.json", {"text": "{nope"}), ("offsets.npy", {"rm": True}), ("offsets.npy", {"text": b"garbage"})]:
        add("corrupt", f"corrupt pretokenized cache: {f} {how}", good(NGRAM, same_bits("unreadable"), edit(f"{CACHE}/{f}", **how)), "recovered")
    add("corrupt", "pretokenized tokens.u16 overwritten with 0xFFFF (same size)", good(NGRAM, same_bits(), lambda c: [p.write_bytes(b"\xff" * p.stat().st_size) for p in c.d.glob(f"{CACHE}/tokens.u16")]), "recovered", "clean_error")
    for desc, setup, must in [("line 4 not JSON", jsonl("s.jsonl", {4: '{"text": "broken'}), r"line 4\b"), ("line 1 not JSON", jsonl("s.jsonl", {1: "{"}), r"line 1\b"), ("half-written last line 40", jsonl("s.jsonl", {40: '{"text": "hal'}, tail=""), r"line 40\b"), ("line 3 without text", jsonl("s.jsonl", {3: '{"title": "x"}'}), r"(line|record) 3\b"), ("line 2 text not a string", jsonl("s.jsonl", {2: '{"text": 5}'}), r"(line|record) 2\b"), ("blank line 2, broken line 5", jsonl("s.jsonl", {2: "", 5: "{"}), r"line 5\b")]:
        add("corrupt", f"JSONL {desc}", bad(on(NGRAM, "s.jsonl"), must, setup))
    add("corrupt", ".JSONL upper-case suffix accepted, same result as .jsonl", good(on(NGRAM, "S.JSONL"), lambda c, r: None if bits(r) == bits(c.run(on(NGRAM, "s.jsonl"))) != "?" else "differs from .jsonl", [jsonl("s.jsonl", n=300), jsonl("S.JSONL", n=300)]), "recovered")
    add("corrupt", ".TXT upper-case suffix accepted", good(on(NGRAM, "S.TXT"), same_bits(), lambda c: shutil.copy(c.d / "stories.txt", c.d / "S.TXT")), "recovered")
    add("corrupt", "non-UTF-8 byte on line 5", bad(NGRAM, r"line 5\b", lambda c: (c.d / "stories.txt").write_bytes(b"\n".join(ln if i != 4 else b"caf\xe9" for i, ln in enumerate((c.d / "stories.txt").read_bytes().split(b"\n"))))))
    add("corrupt", "an empty .txt", bad(NGRAM, "empty|no stories", edit("stories.txt", "")))
    add("corrupt", "a .txt of separators only", bad(NGRAM, "empty|no stories", edit("stories.txt", f"{EOT}\n" * 20)))
    add("corrupt", "an unknown suffix (.csv)", bad(on(NGRAM, "s.csv"), r"csv|format", edit("s.csv", "text\nOnce upon a time.\n")))
    add("corrupt", "a parquet file without a text column", bad(on(NGRAM, "s.parquet"), "text", parquet("s.parquet", "story")))
    add("corrupt", "a garbage .parquet", bad(on(NGRAM, "s.parquet"), "parquet", edit("s.parquet", b"PAR1 garbage")))
    add("corrupt", "a 50 MB one-line story (.txt)", bad(on(NGRAM, "big.txt"), "1,000,000|limit", edit("big.txt", BIG)))
    add("corrupt", "a 50 MB one-line story (.jsonl)", bad(on(NGRAM, "big.jsonl"), "1,000,000|limit", edit("big.jsonl", json.dumps({"text": BIG}) + "\n")))
    add("corrupt", "analyze a run whose final_model.pt is corrupt", bad(ANALYZE, "final_model", edit("runs/done/final_model.pt", cut=500)))
    add("corrupt", "sample from a corrupt HMM model.pt", bad(SAMPLE, "model.pt", edit("hmms/hmm8/model.pt", cut=500)))
    add("corrupt", "ladder --runs a run with a garbage config.yaml", bad(f"{LADDER} --runs runs/done", "config", edit("runs/done/config.yaml", "model: [\n")))
    add("corrupt", "run rerun over a garbage stage marker", good(RUN, exists("out/*_run/summary.md"), [use_smoke(), edit("out/*_run/stages/token_stats.json", "{nope")]), "recovered")
    for cmd, setup in [(into(FIT, "ro"), RO), (into(FIT, "afile"), AFILE), (into(FIT, "afile/sub"), AFILE), (into(NGRAM, "ro"), RO), (into(TRAIN, "ro"), RO), (TOKS.replace("newtok", "ro"), RO), (TOKS.replace("newtok", "afile"), AFILE), ("stats --data stories.txt --vocab-sizes 1024 --tokenizers-dir tok --out afile", AFILE), (into(SMOKE300, "ro"), RO), (SMOKE300.replace("rtok", "ro"), RO), (SAMPLE.replace("sampled", "ro/sampled"), RO), (into(LADDER, "ro"), RO), (into(BELIEFS, "ro"), RO)]:
        add("unwritable", cmd.split(" --")[0] + " into " + ("a read-only folder" if setup is RO else "a file"), bad(cmd, r"\bro\b" if setup is RO else "afile", setup))
    add("unwritable", "fit-hmm on new data with a read-only tokenizer folder", good(on(FIT, "other.txt"), None, [edit(f"{T}/pretokenized", mode=0o555), edit(T, mode=0o555)]), "recovered", "clean_error")
    add("unwritable", "analyze a run in a read-only folder", bad(ANALYZE, "runs/done", edit("runs/done", mode=0o555)))
    add("unwritable", "resume a run in a read-only folder", bad(RESUME, "part", [edit("part/part/checkpoints", mode=0o555), edit("part/part", mode=0o555)]))
    add("unwritable", "fit-hmm on parquet with a read-only HOME", good(on(FIT, "s.parquet"), lambda c, r: "wrote into HOME" if any(c.home.iterdir()) else None, [parquet("s.parquet"), lambda c: c.home.chmod(0o555)]), "recovered")
    add("unwritable", "train with a read-only HOME", good(TRAIN, exists("out/*/final_model.pt"), lambda c: c.home.chmod(0o555)), "recovered")
    R = "recovered"
    add("kill", "SIGKILL while tokenizers writes its first folder", signalled(TOKS, tok_tmp("HF_", "newtok"), check=exists("newtok/HF_custom_tokenizer_1024/tokenizer.json")), R)
    add("kill", "SIGKILL during tokenizers --force (HF folder swap)", signalled(f"{RETOK} --force", tok_tmp("HF_"), then=RETOK), R)
    add("kill", "SIGKILL during tokenizers --force (custom folder swap)", signalled(f"{RETOK} --force", tok_tmp(""), then=RETOK), R)
    add("kill", "SIGKILL while a pretokenized cache is written", signalled(on(NGRAM, "{full}"), appears(CACHE_TMP), delay=0.3), R)
    add("kill", "SIGKILL during EM (fit-hmm)", signalled(LONG_FIT, appears("out/*_hmm64/config.yaml"), delay=1.0, then=FIT), R)
    add("kill", "SIGKILL during ngram after its folder appears", signalled(NGRAM, appears("out/*_kn2")), R)
    add("kill", "SIGKILL while a checkpoint .tmp is written; then --resume", signalled(LONG_TRAIN, appears("out/*/checkpoints/.step_*.tmp", "out/*/checkpoints/step_0000040.pt"), then=latest_resume, check=resumed), R)
    add("kill", "SIGKILL right after train made its folder; then --resume", signalled(LONG_TRAIN, appears("out/*/config.yaml"), then=latest_resume, check=resumed), R)
    add("kill", "loaders skip a killed run (analyze picks the finished one)", signalled(LONG_TRAIN, appears("out/2*/checkpoints/step_*.pt"), then=f"analyze --records-dir out {ANALYZE.split(' ', 2)[2]}", check=lambda c, r: None if "00000000_000000" in r.out else "analyzed another run: " + r.out.strip()[-80:], setup=lambda c: shutil.copytree(c.d / "runs/done", c.d / "out/00000000_000000")), R)
    add("kill", "SIGKILL during experiment sample", signalled(SAMPLE.replace("--stories 20", "--stories 5000"), appears(".sampled.*.tmp")), R)
    add("kill", "SIGKILL during experiment ladder", signalled(LONG_LADDER, appears("out/*"), delay=2.0), R)
    add("kill", "SIGKILL during hmm-lang run (ladder stage); rerun resumes", signalled(RUN, appears("out/*_run/stages/analysis.json"), delay=3.0, check=lambda c, r: None if {"transformer", "analysis"} <= set(stage_log(r, "reusing")) else "finished stages were redone", setup=use_smoke(keep_out=False)), R)
    INT, I = signal.SIGINT, "interrupted_clean"  # noqa: E741
    add("interrupt", "Ctrl-C during EM", signalled(LONG_FIT, appears("out/*_hmm64/config.yaml"), INT, 0.5), I)
    add("interrupt", "Ctrl-C twice during EM", signalled(LONG_FIT, appears("out/*_hmm64/config.yaml"), INT, 0.5, twice=True), I)
    for s in (0.3, 0.8, 1.5, 2.5):  # wherever start-up (imports, corpus, encoding) has got to
        add("interrupt", f"Ctrl-C {s} s after fit-hmm starts", signalled(LONG_FIT, after(s), INT), I)
    add("interrupt", "Ctrl-C while tokenizers writes a folder", signalled("tokenizers --data {full} --vocab-sizes 1024 2048 --out-dir newtok", tok_tmp("HF_", "newtok"), INT), I)
    add("interrupt", "Ctrl-C while a pretokenized cache is written", signalled(on(NGRAM, "{full}"), appears(CACHE_TMP), INT, 0.2), I)
    add("interrupt", "Ctrl-C during training after a checkpoint", signalled(LONG_TRAIN, appears("out/*/checkpoints/step_*.pt"), INT), I)
    add("interrupt", "Ctrl-C during experiment ladder", signalled(LONG_LADDER, appears("out/*"), INT, 1.0), I)
    add("interrupt", "Ctrl-C during experiment sample", signalled(SAMPLE.replace("--stories 20", "--stories 5000"), appears(".sampled.*.tmp"), INT), I)
    add("interrupt", "Ctrl-C during hmm-lang run (transformer stage)", signalled(RUN, appears("out/*_run/stages/token_stats.json"), INT, 1.0, setup=use_smoke(keep_out=False)), I)
    add("reuse", "hmm-lang run rerun, nothing changed: every stage reused", good(RUN, lambda c, r: f"reran {stage_log(r, 'running')}" if stage_log(r, "running") else None, use_smoke()), R)
    stale = lambda c, r: f"stale: reused {stage_log(r, 'reusing')}" if stage_log(r, "reusing") else None  # noqa: E731
    add("reuse", "hmm-lang run after new stories under the same path", good(RUN, stale, [use_smoke(), lambda c: shutil.copy(c.d / "big2.txt", c.d / "big.txt")]), R)
    add("reuse", "hmm-lang run after a same-size edit with the mtime kept", good(RUN, stale, [use_smoke(), same_size_edit]), R)
    add("reuse", "two hmm-lang run on one out-dir (lock)", lock_probe, "clean_error", R)
    # fmt: on
    return rows


# ---- fixtures ------------------------------------------------------------------------------
def write_txt(path: Path, texts: list[str]) -> None:
    path.write_text("".join(f"{s}\n{EOT}\n" for s in texts), encoding="utf-8")


def fixture_ok(res: Res) -> Res:
    if res.rc != 0:
        sys.exit(f"fixture command failed: {res.cmd}\n{res.err[-3000:]}")
    return res


def build_fixtures(base: Path) -> Path:
    """Tokenizers (V=1024, 2048), a finished and a half-trained tiny run and two small HMMs,
    all on 300 stories; each probe folder starts as a copy (a few MB)."""
    if DEV.exists():
        STATE["pool"] = [s.strip() for s in DEV.read_text(encoding="utf-8").split(EOT) if s.strip()]
        FX["full"], STATE["n_big"] = str(DEV), 800
    else:  # 800 synthetic stories are too few for BPE at V=4096
        from hmm_lang.synthetic import generate_stories

        STATE["pool"], STATE["n_big"] = list(generate_stories(10_000, seed=0)), 2500
        write_txt(base / "full.txt", STATE["pool"])
        FX["full"] = str(base / "full.txt")
    fx = base / "fixture"
    ctx = Ctx(fx)
    write_txt(fx / "stories.txt", STATE["pool"][:300])
    write_txt(fx / "other.txt", STATE["pool"][300:600])
    fixture_ok(ctx.run("tokenizers --data stories.txt --vocab-sizes 1024 2048 --out-dir tok"))
    fixture_ok(ctx.run(f"train --config tiny --data stories.txt --tokenizer {T} --out-dir runs"))
    next((fx / "runs").iterdir()).rename(fx / "runs" / "done")
    part = fx / "part" / "part"  # as a kill after the step-10 checkpoint leaves a run
    shutil.copytree(fx / "runs" / "done", part)
    for name in ("final_model.pt", "checkpoints/step_0000020.pt"):
        (part / name).unlink()
    (part / ".incomplete").touch()
    for v, name in ((1024, "hmm8"), (2048, "hmm8_2048")):
        tok = T.replace("1024", str(v))
        fixture_ok(ctx.run(f"fit-hmm --data stories.txt --tokenizer {tok} --states 8 --iters 2 --out-dir hmms"))  # fmt: skip
        next((fx / "hmms").glob("*_hmm8")).rename(fx / "hmms" / name)
    FX["bits"] = bits(fixture_ok(ctx.run(into(NGRAM, "base_ngram"))))
    shutil.rmtree(fx / "base_ngram")
    return fx
