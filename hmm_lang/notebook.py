"""Set-up shared by the notebooks: where artifacts live, smoke mode, inline plotly.

Notebooks call :func:`setup` in their first code cell. ``HMM_LANG_SMOKE=1`` (set by the test
suite) shrinks every experiment to seconds; ``HMM_LANG_HOME`` moves ``tokenizers/`` and
``records/`` (default: the repository root, the parent of ``notebooks/``).

Figures: in every mode the kernel's plotly renderer is ``plotly_mimetype+notebook``: JupyterLab
draws the plotly mimetype, and each output also carries HTML (plotly.js is embedded once, in
the set-up cell's output), so an nbconvert HTML export draws every figure offline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from hmm_lang.errors import HmmLangError
from hmm_lang.profiles import PROFILES, Profile


@dataclass(frozen=True)
class NotebookEnv:
    smoke: bool
    home: Path
    profile: Profile

    @property
    def tokenizers_dir(self) -> Path:
        return self.home / "tokenizers"

    @property
    def records_dir(self) -> Path:
        return self.home / "records"


def setup(smoke: bool | None = None, profile: str = "cpu") -> NotebookEnv:
    """Resolve the notebook's environment; ``smoke=None`` reads ``HMM_LANG_SMOKE``."""
    if smoke is None:
        smoke = os.environ.get("HMM_LANG_SMOKE", "0") == "1"
    home = os.environ.get("HMM_LANG_HOME")
    if home is None:
        cwd = Path.cwd()
        home = cwd.parent if cwd.name == "notebooks" else cwd
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import plotly.io as pio

    pio.renderers.default = RENDERER
    return NotebookEnv(bool(smoke), Path(home), PROFILES["smoke" if smoke else profile])


RENDERER = "plotly_mimetype+notebook"


def ensure_run(env: NotebookEnv, run: str | Path | None = None) -> Path:
    """The run to analyse: ``run`` if given, else the newest trained run under ``records/``;
    in smoke mode with none, a tiny run trained now on the synthetic corpus."""
    from hmm_lang.errors import HmmLangError
    from hmm_lang.runs import find_run

    if run is not None:
        return Path(run)
    try:
        return find_run(None, env.records_dir)
    except HmmLangError:
        if not env.smoke:
            raise
    return train_smoke_run(env)


def train_smoke_run(env: NotebookEnv) -> Path:
    """A configs/tiny.yaml run on the synthetic corpus, with its own 1024 tokenizer."""
    from hmm_lang.config import apply_overrides, load_config
    from hmm_lang.corpus import load_corpus
    from hmm_lang.tokenizer import train_tokenizers
    from hmm_lang.transformer.train import train

    corpus = load_corpus("default", synthetic_stories=env.profile.synthetic_stories)
    tok = train_tokenizers(corpus.train, [1024], env.tokenizers_dir)[1024]
    # the notebooks' corpus (same synthetic stories, same split), so the ladder accepts the run
    items = [f"data.tokenizer={tok}", "data.data=default"]
    items.append(f"data.max_stories={env.profile.synthetic_stories}")
    cfg = apply_overrides(load_config("tiny"), items)
    return train(cfg, env.records_dir, progress=False)


NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def execute_notebooks(
    run: str | Path | None,
    out_dir: str | Path | None = None,
    smoke: bool = False,
    names: list[str] | None = None,
) -> list[Path]:
    """Execute the ordered notebooks against ``run`` and save executed copies and HTML exports
    into ``<out_dir or run>/notebooks/``. The run is injected after each parameters cell; with
    ``run`` None (smoke mode) the notebooks train their own tiny run."""
    import nbformat
    from nbclient import NotebookClient

    from hmm_lang.atomic import write_text

    if run is None and out_dir is None:
        raise ValueError("give a run or an output folder")
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    unknown = sorted(set(names or ()) - {p.stem for p in notebooks})
    if unknown:
        raise HmmLangError(
            f"no notebook named {', '.join(unknown)}; choose from "
            f"{', '.join(p.stem for p in notebooks)}"
        )
    run = Path(run).resolve() if run is not None else None
    out = Path(out_dir or run) / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        if names and path.stem not in names:
            continue
        nb = nbformat.read(path, as_version=4)
        idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        run_text = repr(str(run)) if run is not None else "None"
        injected = f"# injected by hmm-lang notebooks\nRUN = {run_text}\nSMOKE = {smoke!r}"
        nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(injected))
        NotebookClient(
            nb,
            timeout=3600,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
        ).execute()
        target = out / path.name
        write_text(target, nbformat.writes(nb))
        written.append(target)
        try:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            write_text(target.with_suffix(".html"), body)
            written.append(target.with_suffix(".html"))
        except ImportError:
            logging.getLogger(__name__).info("nbconvert not installed: HTML export skipped")
    return written
