"""Set-up shared by the notebooks: where artifacts live, smoke mode, inline plotly.

Notebooks call :func:`setup` in their first code cell. ``HMM_LANG_SMOKE=1`` (set by the test
suite) shrinks every experiment to seconds; ``HMM_LANG_HOME`` moves ``tokenizers/`` and
``records/`` (default: the repository root, the parent of ``notebooks/``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from hmm_lang.pipeline import PROFILES, Profile


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
    try:
        import plotly.io as pio

        pio.renderers.default = "notebook_connected" if not smoke else "json"
    except ImportError:  # pragma: no cover
        pass
    return NotebookEnv(bool(smoke), Path(home), PROFILES["smoke" if smoke else profile])
