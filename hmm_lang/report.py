"""``report.html``: every figure and table of a run in one self-contained page.

plotly.js is embedded once (no CDN), each figure is a div drawn from its saved JSON, and the
markdown tables become HTML tables. A tiny script records JavaScript errors into
``#js-errors`` so that a headless browser test can read them back from the DOM.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from hmm_lang.atomic import write_text

STAGE_ORDER = ("token_stats", "transformer", "analysis", "ladder", "beliefs")
ERROR_HOOK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(String(e.message));
  var el = document.getElementById('js-errors');
  if (el) { el.textContent = window.__errors.join('\\n'); }
});
</script>"""


def markdown_table_html(md: str) -> str:
    """A GitHub-style markdown table (and plain lines) as HTML."""
    out, rows = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
            continue
        if rows:
            head, *body = rows
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                + "</tr></thead><tbody>"
            )
            out += [
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body
            ]
            out.append("</tbody></table>")
            rows = []
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)


def _figures(stage_dir: Path) -> list[tuple[str, str]]:
    marker = stage_dir.parent / "stages" / f"{stage_dir.name}.json"
    if not marker.exists():
        return []
    names = json.loads(marker.read_text())["result"].get("figures", [])
    return [
        (n, (stage_dir / f"{n}.json").read_text())
        for n in names
        if (stage_dir / f"{n}.json").exists()
    ]


def write_report(run_dir: str | Path, summary_md: str) -> Path:
    """Write ``<run_dir>/report.html`` from the stages' saved figures and tables."""
    from plotly.offline import get_plotlyjs

    run_dir = Path(run_dir)
    parts = [markdown_table_html(summary_md)]
    for stage in STAGE_ORDER:
        stage_dir = run_dir / stage
        figs = _figures(stage_dir)
        tables = sorted(stage_dir.glob("*.md")) + sorted(stage_dir.glob("*/r2.md"))
        if not figs and not tables:
            continue
        parts.append(f"<h2>{html.escape(stage.replace('_', ' '))}</h2>")
        for t in tables:
            parts.append(markdown_table_html(t.read_text()))
        for i, (name, fig_json) in enumerate(figs):
            div = f"fig-{stage}-{i}"
            parts.append(f'<h3>{html.escape(name)}</h3><div id="{div}" class="figure"></div>')
            safe = fig_json.replace("</", "<\\/")  # a token text must not close the script
            parts.append(
                f"<script>(function(){{var f={safe};"
                f"Plotly.newPlot('{div}', f.data, f.layout, {{responsive: true}});}})();</script>"
            )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hmm-lang run {html.escape(run_dir.name)}</title>
{ERROR_HOOK}
<script>{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}
.figure{{margin-bottom:2em}}</style></head>
<body><pre id="js-errors"></pre>
{chr(10).join(parts)}
</body></html>
"""
    path = run_dir / "report.html"
    write_text(path, page)
    return path
