"""Run folders: ``records/<YYYYmmdd_HHMMSS>[_name]/``, never overwritten, self-describing."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

from hmm_lang.atomic import write_json


def new_run_dir(out_dir: str | Path = "records", name: str | None = None) -> Path:
    """Create and return a fresh run folder; a clash in the same second gets a ``-N`` suffix."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d_%H%M%S") + (f"_{name}" if name else "")
    for i in range(1000):
        path = out / (stem if i == 0 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {out}")


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
