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
    from hmm_lang.pipeline import PROFILES

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
