"""Save figures as standalone HTML (always) and PNG (when a browser for kaleido exists)."""

from __future__ import annotations

import logging
from pathlib import Path

import plotly.graph_objects as go

from hmm_lang.atomic import atomic_path

log = logging.getLogger(__name__)
_png_ok: bool | None = None


def save_figure(fig: go.Figure, out_dir: str | Path, name: str, png: bool = True) -> list[Path]:
    """Write ``name.html`` (self-contained) and, if possible, ``name.png``; return the paths.

    Plotly's static export (kaleido) needs Chrome or Chromium: without one, PNG is skipped with
    one logged message and the analysis carries on.
    """
    global _png_ok
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.html"]
    with atomic_path(paths[0]) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    if png and _png_ok is not False:
        try:
            with atomic_path(out / f"{name}.png") as tmp:
                fig.write_image(str(tmp), format="png")
            paths.append(out / f"{name}.png")
            _png_ok = True
        except Exception as e:  # no kaleido, or kaleido without a browser
            _png_ok = False
            log.info("PNG export skipped (%s: %s); HTML written", type(e).__name__, str(e)[:120])
    return paths
