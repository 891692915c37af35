"""Every notebook runs top to bottom in smoke mode, in a scratch HMM_LANG_HOME."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_are_ordered_and_clean():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("01_")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].cell_type == "markdown", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        assert "parameters" in code[0].metadata.get("tags", []), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HMM_LANG_SMOKE", "1")
    monkeypatch.setenv("HMM_LANG_HOME", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_hmm_lang_notebooks_saves_executed_copies_and_html(tmp_path, monkeypatch):
    from hmm_lang.notebook import NotebookEnv, execute_notebooks, train_smoke_run
    from hmm_lang.profiles import PROFILES

    monkeypatch.setenv("HMM_LANG_HOME", str(tmp_path))
    run = train_smoke_run(NotebookEnv(True, tmp_path, PROFILES["smoke"]))
    written = execute_notebooks(
        run, smoke=True, names=["01_corpus_and_tokenizers", "03_embeddings"]
    )
    names = sorted(p.name for p in written)
    assert names == [
        "01_corpus_and_tokenizers.html",
        "01_corpus_and_tokenizers.ipynb",
        "03_embeddings.html",
        "03_embeddings.ipynb",
    ]
    executed = nbformat.read(run / "notebooks" / "03_embeddings.ipynb", as_version=4)
    assert str(run) in executed.cells[2].source  # the injected run
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")


def test_smoke_notebooks_need_no_run_and_exports_draw_every_figure(tmp_path, monkeypatch):
    """`HMM_LANG_SMOKE=1 hmm-lang notebooks` with no trained run: the notebook trains its own,
    and its HTML export, opened offline in headless Chromium, draws one figure per figure
    output."""
    import re
    import subprocess

    from hmm_lang.cli import main
    from tests.test_pipeline import _chromium

    monkeypatch.setenv("HMM_LANG_SMOKE", "1")
    monkeypatch.setenv("HMM_LANG_HOME", str(tmp_path))
    assert main(["notebooks", "--only", "01_corpus_and_tokenizers"]) == 0
    out = tmp_path / "records" / "notebooks"
    nb = nbformat.read(out / "01_corpus_and_tokenizers.ipynb", as_version=4)
    injected = next(c.source for c in nb.cells if "injected by hmm-lang" in c.source)
    assert "SMOKE = True" in injected and "RUN = None" in injected
    n_figs = sum(
        "application/vnd.plotly.v1+json" in o.get("data", {})
        for c in nb.cells
        for o in c.get("outputs", [])
    )
    assert n_figs >= 1
    html = (out / "01_corpus_and_tokenizers.html").read_text()
    assert html.count("Plotly.newPlot(") >= n_figs
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs it)")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
         "--enable-unsafe-swiftshader", "--dump-dom", (out / "01_corpus_and_tokenizers.html").as_uri()],
        capture_output=True, text=True, timeout=180,
    ).stdout  # fmt: skip
    drawn = len(re.findall(r'class="[^"]*js-plotly-plot', dom))
    assert drawn == n_figs, f"{drawn} figures drawn of {n_figs}"
