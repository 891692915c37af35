"""Reliability audit of the ``hmm-lang`` CLI: bad inputs and faults, one subprocess per probe.

Repeats the reliability issue's audit (bad inputs and faults tried as a new user would, on small
slices of the dev text) against the project's promises: bad input gets one line ``error: ...``
on stderr and exit 2, before any work or folder; Ctrl-C gives one line and exit 130; nothing
half-written is left behind, even after SIGKILL. Each probe runs in a fresh copy of small
fixtures (HOME and HMM_LANG_HOME inside it), one at a time, under ``nice -n 19`` with one
thread, and is classified automatically; the summary is printed and written to
docs/results/reliability_probes.md. Data: ../shared/data/tinystories_dev.txt when present
(300 stories per probe), else the embedded synthetic generator.

    python benchmarks/reliability_probes.py [--only ID_PART ...] [--keep] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script this module is __main__: the cases' ``from reliability_probes import``
# must find it, not load a second copy with its own FX and STATE.
sys.modules.setdefault("reliability_probes", sys.modules[__name__])

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "tinystories_dev.txt"
REPORT = ROOT / "docs" / "results" / "reliability_probes.md"
TIMEOUT = 300.0
ERROR_LINE = re.compile(r"^(hmm-lang[\w -]*: )?error: ")  # ours, or argparse's usage error
_CAPS = "-dac_override,-dac_read_search,-fowner"  # root ignores modes: make read-only bite
PREFIX = ["nice", "-n", "19"] + (
    ["setpriv", f"--inh-caps={_CAPS}", f"--bounding-set={_CAPS}"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)
FX: dict[str, str] = {}  # {full} in a command: a corpus big enough to kill its encoding midway
STATE: dict = {}  # the base folder, the fixture folder, the story pool (set in main)


def _child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))  # a missing memory check
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # fails fast; Ctrl-C works from a background job


@dataclass
class Res:
    args: list[str]
    rc: int | None  # None: timed out
    out: str
    err: str
    seconds: float
    lines = property(lambda self: [x for x in re.split(r"[\r\n]+", self.err) if x.strip()])
    last = property(lambda self: (self.lines or [""])[-1])
    cmd = property(lambda self: "hmm-lang " + shlex.join(self.args))


class Ctx:
    """A probe's folder: a copy of the fixtures with its own HOME; runs the CLI inside it."""

    def __init__(self, d: Path):
        self.d, self.home, self.n = d, d / ".home", 0
        self.home.mkdir(parents=True, exist_ok=True)
        drop = ("HF_", "XDG_", "TRANSFORMERS_", "HMM_LANG")  # nothing may point outside
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {
            "HOME": str(self.home), "HMM_LANG_HOME": str(d / ".hmm_lang_home"), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "TORCH_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
        }  # fmt: skip

    def start(self, argv: str) -> tuple[subprocess.Popen, Callable[[float], Res]]:
        args, self.n = shlex.split(argv.format_map(FX)), self.n + 1
        logs = (self.d / f".out{self.n}", self.d / f".err{self.n}")
        # output goes to files: a pipe nobody reads while we poll would stall a chatty process
        with open(logs[0], "w") as so, open(logs[1], "w") as se:
            p = subprocess.Popen([*PREFIX, sys.executable, "-m", "hmm_lang.cli", *args], cwd=self.d,
                                 env=self.env, stdout=so, stderr=se, stdin=subprocess.DEVNULL, preexec_fn=_child)  # fmt: skip
        t0 = time.monotonic()

        def finish(timeout: float = TIMEOUT) -> Res:
            try:
                rc: int | None = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = None
            o, e = (x.read_text(errors="replace") for x in logs)
            return Res(args, rc, o, e, time.monotonic() - t0)

        return p, finish

    def run(self, argv: str) -> Res:
        return self.start(argv)[1](TIMEOUT)


@dataclass
class Outcome:
    outcome: str
    cmd: str
    rc: int | None
    tail: list[str]
    note: str = ""


def out(outcome: str, res: Res, note: str = "", cmd: str = "") -> Outcome:
    return Outcome(outcome, cmd or res.cmd, res.rc, res.lines[-3:], note)


# ---- what a command left behind (HOME and pretokenized caches are not outputs) -------------
def snapshot(d: Path) -> set[str]:
    seen = set()
    for root, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if x not in (".home", "pretokenized")]
        seen |= {str(Path(root, n).relative_to(d)) for n in dirs + files}
    return seen


def leftovers(d: Path, before: set[str]) -> list[str]:
    """New visible files, new visible folders holding more than a lock file, temporaries."""
    hidden = lambda p: any(s[0] == "." for s in Path(p).parts)  # noqa: E731
    full = lambda q: q.is_file() or any(x.name not in (".lock", ".hmm_lang_run.lock") for x in q.iterdir())  # noqa: E731  # fmt: skip
    return sorted(p for p in snapshot(d) - before if p.endswith(".tmp") or (not hidden(p) and full(d / p)))  # fmt: skip


def tmps(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*.tmp") if ".home" not in p.parts)


def half_written(d: Path, before: set[str], interrupted: bool = False) -> list[str]:
    """Visible folders neither whole nor marked ``.incomplete``; after Ctrl-C, also marked ones
    the CLI should have removed (by its rule, :func:`records.holds_resumable_work`)."""
    from hmm_lang.records import holds_resumable_work

    bad = []
    for p in (p for p in d.rglob("*") if p.is_dir()):
        rel, new = p.relative_to(d), str(p.relative_to(d)) not in before
        done = ("metrics.json", "final_model.pt", "summary.md", "ladder.md", "beliefs.md")
        if any(s[0] == "." for s in rel.parts):
            continue
        if re.fullmatch(r"(HF_)?custom_tokenizer_\d+", p.name) and not all((p / f).exists() for f in ("tokenizer.json", "hmm_lang.json")):  # fmt: skip
            bad.append(f"half tokenizer {rel}")
        elif (p / "tokens.u16").exists() and not (p / "meta.json").exists():
            bad.append(f"half token stream {rel}")
        elif new and ((p / "config.yaml").exists() or (p / "run.yaml").exists()) and not (p / ".incomplete").exists() and not any((p / f).exists() for f in done):  # fmt: skip
            bad.append(f"unmarked unfinished run {rel}")
        elif interrupted and new and (p / ".incomplete").exists() and not holds_resumable_work(p):
            bad.append(f"unfinished run left {rel}")
    return bad


# ---- classification ------------------------------------------------------------------------
def unclean(res: Res) -> str:
    """Why stderr does not end in one line ``error: ...``."""
    hits = [i for i, ln in enumerate(res.lines) if "error: " in ln]
    if not hits:
        return f"exit {res.rc}, no 'error:' line"
    if not ERROR_LINE.match(res.lines[hits[-1]]):
        return f"exit {res.rc}; 'error:' is glued to the end of a progress bar line"
    return f"exit {res.rc}; {len(res.lines) - 1 - hits[-1]} log lines follow the 'error:' line"


Check = Callable[["Ctx", Res], "str | None"]  # None: the result is right; else what is wrong


def verdict(ctx: Ctx, res: Res, want: str, before: set[str] = frozenset(), must: str = "", max_s: float = 0.0,
            check: Check | None = None, cmd: str = "", killed: bool = False, watch: str = "") -> Outcome:  # fmt: skip
    """``want``: "error" (exit 2, one line), "interrupt" (exit 130, one line), "ok" (exit 0,
    ``check`` passes, no temporaries)."""
    if want == "interrupt" and res.rc == -signal.SIGINT:
        res.rc = 130  # died of our own second SIGINT: a shell shows 130 as well
    if res.rc is None:
        return out("timeout", res, f"no exit within {TIMEOUT:.0f} s", cmd)
    if "Traceback (most recent call last)" in res.err:
        return out("traceback", res, "", cmd)
    if res.rc < 0:
        return out("abort", res, f"died of {signal.Signals(-res.rc).name}", cmd)
    if want == "ok":
        if res.rc != 0:
            clean = res.rc == 2 and ERROR_LINE.match(res.last)
            return out("clean_error" if clean else "unclean_error", res, unclean(res), cmd)
        if left := tmps(ctx.d):
            kind = "leftover_after_kill" if killed else "silent_wrong"
            return out(kind, res, "temporary files left: " + ", ".join(left[:3]), cmd)
        why = check(ctx, res) if check else None
        return out("silent_wrong" if why else "recovered", res, why or "", cmd)
    if res.rc == 0:
        return out("silent_wrong", res, f"exit 0 where {want} was expected", cmd)
    if res.rc != (2 if want == "error" else 130) or not ERROR_LINE.match(res.last):
        return out("unclean_error", res, unclean(res), cmd)
    if must and not re.search(must, res.last, re.I):
        return out("wrong_message", res, f"the error does not name /{must}/", cmd)
    if max_s and res.seconds > max_s:
        return out("late_error", res, f"refused only after {res.seconds:.0f} s", cmd)
    if want == "interrupt":
        left = tmps(ctx.d) + half_written(ctx.d, before, interrupted=True)
    elif watch:  # only what matches: another process writes beside this one
        left = [str(p) for p in ctx.d.glob(watch) if str(p.relative_to(ctx.d)) not in before]
    else:
        left = sorted({*leftovers(ctx.d, before), *tmps(ctx.d)})
    good = "clean_error" if want == "error" else "interrupted_clean"
    return out("error_with_leftover" if left else good, res, ", ".join(left[:4]), cmd)


# ---- probe builders ------------------------------------------------------------------------
Setup = Callable[[Ctx], object]
Setups = Setup | list[Setup] | None


def _setup(ctx: Ctx, setup: Setups) -> None:
    for s in setup if isinstance(setup, list) else [setup] if setup else []:
        s(ctx)


def cli(argv: str, want: str, must: str = "", setup: Setups = None, max_s: float = 0.0, check: Check | None = None):  # fmt: skip
    """A probe: set up, run ``argv`` once, judge it (see :func:`verdict`)."""

    def fn(ctx: Ctx) -> Outcome:
        _setup(ctx, setup)
        before = snapshot(ctx.d)
        return verdict(ctx, ctx.run(argv), want, before, must, max_s, check)

    return fn


def bad(argv: str, must: str = "", setup: Setups = None, max_s: float = 0.0):
    return cli(argv, "error", must, setup, max_s)


def good(argv: str, check: Check | None = None, setup: Setups = None):
    return cli(argv, "ok", setup=setup, check=check)


def wait_until(p: subprocess.Popen, pred: Callable[[], bool], limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end and p.poll() is None:
        if pred():
            return True
        time.sleep(0.001)  # a folder is written in milliseconds
    return False


def appears(*patterns: str) -> Callable[[Path], bool]:
    return lambda d: any(next(iter(d.glob(p)), None) is not None for p in patterns)


def after(seconds: float) -> Callable[[Path], bool]:
    t0: list[float] = []  # polling starts as the process starts
    return lambda d: (t0.append(time.monotonic()) or t0[-1] - t0[0]) >= seconds


def signalled(argv: str, when: Callable[[Path], bool], sig: int = signal.SIGKILL, delay: float = 0.0,
              then: str | Callable[[Path], str] = "", check: Check | None = None, setup: Setups = None,
              twice: bool = False):  # fmt: skip
    """Signal the command once ``when`` holds; after SIGKILL, rerun (``then``) and check."""

    def fn(ctx: Ctx) -> Outcome:
        d = ctx.d
        for attempt in range(5):  # the poll may miss a write of milliseconds: start over
            if attempt:
                _rmtree(d)
                copy_fixture(d)
                ctx = Ctx(d)
            _setup(ctx, setup)
            before = snapshot(d)
            p, finish = ctx.start(argv)
            seen = wait_until(p, lambda: when(d), 120.0)
            time.sleep(delay)
            if p.poll() is None:
                break
        else:
            return out("not_triggered", finish(TIMEOUT), "it ended before the signal, 5 times")
        p.send_signal(sig)
        if twice:  # an impatient user presses Ctrl-C again during the cleanup
            time.sleep(0.2)
            p.poll() is None and p.send_signal(sig)
        res = finish(60.0)
        cmd = f"{res.cmd}  # {signal.Signals(sig).name}{'' if seen else ' (trigger not seen)'}"
        if sig != signal.SIGKILL:
            return verdict(ctx, res, "interrupt", before, cmd=cmd)
        if bad := half_written(d, before):
            return out("leftover_after_kill", res, "; ".join(bad[:3]), cmd)
        again = ctx.run(then(d) if callable(then) else then or argv)
        return verdict(ctx, again, "ok", check=check, cmd=f"{cmd}; then {again.cmd}", killed=True)

    return fn


# ---- probes, their folders ----------------------------------------------------------------
@dataclass
class Probe:
    pid: str
    cls: str
    desc: str
    fn: Callable[[Ctx], Outcome]
    expect: tuple[str, ...]


def copy_fixture(d: Path) -> None:
    shutil.copytree(STATE["fixture"], d, ignore=shutil.ignore_patterns(".home", ".out*", ".err*"))
    for env in d.glob("*/*/environment.json"):  # as if started here: a resume must not find
        info = json.loads(env.read_text())  # the fixture's data through the recorded cwd
        env.write_text(json.dumps(info | {"cwd": str(d)}))


def _rmtree(d: Path) -> None:
    for p in [d, *d.rglob("*")]:  # read-only folders made by a probe
        p.chmod(0o755) if p.is_dir() and not p.is_symlink() else None
    shutil.rmtree(d, ignore_errors=True)


# ---- report, main loop ---------------------------------------------------------------------
def report(rows: list[tuple[Probe, Outcome]], data: str, seconds: float) -> str:
    classes, names = (
        list(dict.fromkeys(p.cls for p, _ in rows)),
        sorted({o.outcome for _, o in rows}),
    )
    count, wrong = Counter((p.cls, o.outcome) for p, o in rows), [(p, o) for p, o in rows if o.outcome not in p.expect]  # fmt: skip
    lines = [
        "# Reliability probes of the hmm-lang CLI\n",
        f"`python benchmarks/reliability_probes.py`, {time.strftime('%Y-%m-%d %H:%M')}: {len(rows)} "
        f"probes in {seconds / 60:.1f} min, each a subprocess in a fresh folder, on {data}. "
        f"{len(rows) - len(wrong)} ended as expected, {len(wrong)} did not.\n",
        "| class | " + " | ".join(names) + " | total |",
        "|---" * (len(names) + 2) + "|",
    ]
    for group in [[c] for c in classes] + [classes]:  # one row per class, then all
        cells = [sum(count[c, k] for c in group) for k in names]
        lines.append(f"| {group[0] if len(group) == 1 else 'all'} | " + " | ".join(str(x or "") for x in cells) + f" | {sum(cells)} |")  # fmt: skip
    lines += ["\n## Not as expected\n"]
    for p, o in wrong:
        note = f" ({o.note})" if o.note else ""
        lines += [f"* **{p.pid}** {p.desc}: expected {' or '.join(p.expect)}, got **{o.outcome}**{note}",
                  f"  `{o.cmd}` -> exit {o.rc}", *[f"  > {ln[:300]}" for ln in o.tail]]  # fmt: skip
    lines += ["\n## Every probe\n", "| id | probe | expected | outcome |", "|---|---|---|---|"]
    lines += [f"| {p.pid} | {p.desc} | {' or '.join(p.expect)} | {o.outcome} |" for p, o in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    from reliability_cases import build_fixtures, probes  # not at the top: they import this module

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="probes whose id contains one")
    ap.add_argument("--keep", action="store_true", help="keep the probe folders")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {REPORT.name}")
    args = ap.parse_args()
    t0, base = time.monotonic(), Path(tempfile.mkdtemp(prefix="hmm_lang_probes_"))
    print(f"fixtures in {base}", flush=True)
    STATE["base"], STATE["fixture"] = base, build_fixtures(base)
    chosen = [p for p in probes() if not args.only or any(s in p.pid for s in args.only)]
    rows = []
    for i, probe in enumerate(chosen, 1):
        d, t1 = base / "probes" / probe.pid, time.monotonic()
        copy_fixture(d)
        try:
            o = probe.fn(Ctx(d))
        except Exception as e:  # a fault of this script, not of the CLI: say so, go on
            o = Outcome("probe_error", probe.desc, None, [], f"{type(e).__name__}: {e}")
        rows.append((probe, o))
        flag = "" if o.outcome in probe.expect else "   <-- " + (o.note or o.outcome)
        print(f"[{i}/{len(chosen)}] {probe.pid} {o.outcome} ({time.monotonic() - t1:.0f} s){flag}", flush=True)  # fmt: skip
        _rmtree(d) if not args.keep else None
    data = f"{DEV.name} (300-story slices)" if DEV.exists() else "the embedded synthetic corpus"
    text = report(rows, data, time.monotonic() - t0)
    print(text)
    if not args.no_write:
        REPORT.write_text(text)
        print(f"wrote {REPORT}")
    _rmtree(base) if not args.keep else None


if __name__ == "__main__":
    main()
