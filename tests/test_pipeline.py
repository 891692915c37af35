"""`hmm-lang run --profile smoke` end to end: reuse, SIGKILL and rerun, the offline report."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RUN = [sys.executable, "-m", "hmm_lang.cli", "run", "--profile", "smoke"]


def run_cmd(cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(RUN, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def results_table(run_dir: Path) -> list[str]:
    """The summary's model rows (bits/byte), without the timings."""
    lines = (run_dir / "summary.md").read_text().splitlines()
    return [
        ln
        for ln in lines
        if ln.startswith("| ") and "seconds" not in ln and not re.match(r"\| \w+ \| [\d.]+ \|$", ln)
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ref")
    t0 = time.perf_counter()
    out = run_cmd(cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = list((cwd / "records").glob("*_run"))
    return cwd, run_dir, time.perf_counter() - t0


def test_smoke_run_produces_everything(reference):
    cwd, run_dir, seconds = reference
    rows = results_table(run_dir)
    text = "\n".join(rows)
    for family in ("unigram", "KN 3-gram", "HMM K=8", "cloned HMM", "transformer"):
        assert family in text
    for stage in ("tokenizers", "token_stats", "transformer", "analysis", "ladder", "beliefs"):
        assert (run_dir / "stages" / f"{stage}.json").exists()
    report = (run_dir / "report.html").read_text()
    assert report.count("Plotly.newPlot(") >= 10
    assert report.count("* plotly.js v") == 1  # the library embedded once
    assert "<script src=" not in report  # nothing fetched: it opens offline
    assert seconds < 180


def test_rerun_reuses_every_stage(reference):
    cwd, run_dir, _ = reference
    t0 = time.perf_counter()
    out = run_cmd(cwd)
    assert out.returncode == 0
    assert out.stderr.count("reusing outputs") == 6
    assert time.perf_counter() - t0 < 60
    assert len(list((cwd / "records").glob("*_run"))) == 1


def test_sigkill_then_rerun_gives_the_same_results(reference, tmp_path):
    _, ref_dir, seconds = reference
    proc = subprocess.Popen(
        RUN,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(random.Random(os.getpid()).uniform(3, max(4, seconds * 0.7)))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out = run_cmd(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = list((tmp_path / "records").glob("*_run"))
    assert results_table(run_dir) == results_table(ref_dir)
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


def test_report_renders_offline_in_headless_chromium(reference, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "Chromium is not installed (Debian packages chromium, chromium-driver; .ci/run installs them)"
        )
    _, run_dir, _ = reference
    out = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",  # network off
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=20000",
            "--enable-unsafe-swiftshader",
            "--dump-dom",
            (run_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = out.stdout
    assert '<pre id="js-errors"></pre>' in dom, re.findall(
        r'<pre id="js-errors">(.*?)</pre>', dom, re.S
    )
    figures = re.split(r'(?=<div id="fig-)', dom)[1:]
    assert len(figures) >= 10
    for part in figures:
        name, classes = re.match(r'<div id="(fig-[^"]+)" class="([^"]*)"', part).groups()
        assert "js-plotly-plot" in classes and "main-svg" in part, f"{name} was not drawn"


def test_changed_corpus_reruns_every_stage_that_reads_it(tmp_path):
    """Stage keys cover content: the same --data path with other stories reuses nothing
    downstream of the corpus (the transformer, analysis, ladder and beliefs all rerun)."""
    from hmm_lang.synthetic import generate_stories

    data = tmp_path / "stories.txt"
    stories = list(generate_stories(2500, seed=0))
    data.write_text("".join(s + "\n<|endoftext|>\n" for s in stories))
    cmd = [*RUN, "--data", str(data)]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    data.write_text("".join(s.replace(" the ", " a ") + "\n<|endoftext|>\n" for s in stories))
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "reusing outputs" not in second.stderr
    for stage in ("tokenizers", "transformer", "analysis", "ladder", "beliefs"):
        assert f"stage {stage}: running" in second.stderr
    assert len(list((tmp_path / "records").glob("*_run"))) == 1
