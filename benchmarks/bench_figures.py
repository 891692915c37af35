"""Size and draw time of a run's figures at its vocabulary size (V=4096 for cpu_small).

    python benchmarks/bench_figures.py [--run records/<time>]
    python benchmarks/bench_figures.py --html <run>/report.html   # one page: size, draw time

Builds the figures `hmm-lang analyze` writes (embedding and unembedding similarity with their
coarse-graining, one head's weights and circuits, attention patterns, residual PCA over 20k
tokens), saves each as self-contained HTML, and opens each in headless Chromium, offline: the
draw time is from navigation start until plotly has drawn every figure of the page (read from
``performance.now()`` in the page, so browser start-up is not counted). The anchor is the same
figure's JSON size, what any plotly page must at least carry.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PROBE = """<script>
(function wait() {
  // plotly.py pages hold .plotly-graph-div; report.html holds div.figure
  var divs = document.querySelectorAll('.plotly-graph-div, div.figure');
  var n = divs.length, drawn = 0;
  divs.forEach(function (d) { if (d.querySelector('.main-svg')) { drawn += 1; } });
  if (n > 0 && drawn >= n) { document.title = 'drawn ' + performance.now().toFixed(0); }
  else { setTimeout(wait, 20); }
})();
</script>"""


def draw_ms(html: Path, browser: str, profile: Path) -> float | None:
    """Milliseconds until every plotly figure of ``html`` is drawn (None: not drawn)."""
    timed = html.with_name(html.stem + "_timed.html")
    timed.write_text(html.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         f"--user-data-dir={profile}", "--virtual-time-budget=60000",
         "--enable-unsafe-swiftshader", "--dump-dom", timed.as_uri()],
        capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    m = re.search(r"<title>drawn (\d+)</title>", dom)
    return float(m.group(1)) if m else None


def main() -> None:
    from hmm_lang.plots.export import save_figure
    from hmm_lang.plots.run_figures import (
        circuit_figures,
        patterns_figure,
        pca_figures,
        similarity_figure,
    )
    from hmm_lang.runs import find_run, load_run, run_streams, token_counts

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None)
    ap.add_argument("--html", default=None, help="time this page instead (e.g. report.html)")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("google-chrome")
    if args.html:
        page = Path(args.html)
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / page.name
            shutil.copy(page, copy)
            ms = draw_ms(copy, browser, Path(tmp) / "profile") if browser else None
            figs = page.read_text(encoding="utf-8").count('class="figure"')
        draw = "-" if ms is None else f"{ms / 1000:.2f}"
        print("| page | HTML MB | figures | draw s |\n|---|---|---|---|")
        print(f"| {page} | {page.stat().st_size / 1e6:.2f} | {figs} | {draw} |")
        return
    run = load_run(find_run(args.run))
    train, valid = run_streams(run)
    counts = token_counts(train, len(run.tokenizer))
    figs = {
        "embed_similarity_id": similarity_figure(run.model, run.tokenizer, "embed", "id"),
        "embed_similarity_frequency": similarity_figure(
            run.model, run.tokenizer, "embed", "frequency", counts=counts
        ),
        "unembed_similarity_frequency": similarity_figure(
            run.model, run.tokenizer, "unembed", "frequency", counts=counts
        ),
        **circuit_figures(run.model, run.tokenizer, counts, 0, 0),
        "attention_patterns": patterns_figure(run.model, run.tokenizer, valid.story(0)),
    }
    pcs = pca_figures(run.model, run.tokenizer, valid, counts, n_tokens=20_000)
    figs["pca2d_log10_frequency"] = pcs["pca2d_log10_frequency"]
    print(f"run {run.path} (V={len(run.tokenizer)}); browser {browser or 'none'}")
    print("| figure | HTML MB | JSON MB | draw s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name, fig in figs.items():
            (html,) = [p for p in save_figure(fig, out, name, png=False) if p.suffix == ".html"]
            json_mb = len(fig.to_json()) / 1e6
            ms = draw_ms(html, browser, out / "profile") if browser else None
            draw = "-" if ms is None else f"{ms / 1000:.2f}"
            print(f"| {name} | {html.stat().st_size / 1e6:.2f} | {json_mb:.2f} | {draw} |")


if __name__ == "__main__":
    main()
