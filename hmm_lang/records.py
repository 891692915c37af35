"""Run folders: ``records/<YYYYmmdd_HHMMSS>[_name]/``, never overwritten, self-describing."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from hmm_lang.atomic import write_json

INCOMPLETE = ".incomplete"  # present until the run's work is done (see mark_complete)
_created: list[Path] = []  # run folders this process made, for cleanup after an error


def new_run_dir(out_dir: str | Path = "records", name: str | None = None) -> Path:
    """Create and return a fresh run folder; a clash in the same second gets a ``-N`` suffix.

    The folder holds an ``.incomplete`` marker until :func:`mark_complete`: loaders skip
    marked folders, and after an error or Ctrl-C the CLI removes the ones that hold nothing
    worth keeping (:func:`discard_incomplete`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d_%H%M%S") + (f"_{name}" if name else "")
    for i in range(1000):
        path = out / (stem if i == 0 else f"{stem}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / INCOMPLETE).touch()
        _created.append(path)
        return path
    raise RuntimeError(f"could not create a new run folder under {out}")


def mark_complete(run_dir: str | Path) -> None:
    """The run's outputs are all written: remove its ``.incomplete`` marker."""
    (Path(run_dir) / INCOMPLETE).unlink(missing_ok=True)


def is_complete(run_dir: str | Path) -> bool:
    return not (Path(run_dir) / INCOMPLETE).exists()


def holds_resumable_work(path: str | Path) -> bool:
    """Whether an unfinished run folder holds work a rerun resumes from (training checkpoints,
    finished pipeline stages, a ladder's saved fits) or finished results (a ladder's rows)."""
    path = Path(path)
    if (path / "ladder.csv").exists():
        return True
    return any(any(path.glob(g)) for g in ("checkpoints/*.pt", "stages/*.json", "fits/*.npz"))


def discard_incomplete() -> list[Path]:
    """Remove the unfinished run folders this process created, except those that
    :func:`holds_resumable_work`; returns the removed."""
    import shutil

    removed = []
    for path in _created:
        if not path.exists() or is_complete(path) or holds_resumable_work(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    _created.clear()
    return removed


def environment() -> dict:
    """Versions, git revision and machine, stored beside each run's config."""
    import numpy
    import torch

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {
        "cwd": os.getcwd(),  # relative paths in the run's config are relative to this
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.is_available(),
        "git_revision": rev or None,
        "argv": sys.argv,
    }


def write_environment(run_dir: Path) -> None:
    write_json(run_dir / "environment.json", environment())
