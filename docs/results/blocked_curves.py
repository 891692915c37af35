"""EM learning curves of the blocked HMM fits (docs/results/blocked_*_metrics.json) as one PNG.

python docs/results/blocked_curves.py 4096x128   # extra K x M fits beyond the first three
"""

import json
import sys
from pathlib import Path

from hmm_lang.plots.ladder import curves_figure

res = Path("docs/results")
curves = []
for k, m in ((1024, 128), (4096, 512), (16384, 2048)) + tuple(
    tuple(map(int, a.split("x"))) for a in sys.argv[1:]
):
    d = json.loads((res / f"blocked_{k}x{m}_metrics.json").read_text())
    name = f"blocked K={k} ({m} x {k // m}): val {d['bits_per_byte']:.4f} bits/byte"
    for h in d["history"]:
        curves.append(
            {"model": name, "seed": 0}
            | {key: h[key] for key in ("iteration", "train_nats_per_token", "dev_nats_per_token")}
        )
fig = curves_figure(curves)
fig.update_layout(
    title="Blocked HMMs (V=4096, dev text): EM nats/token by iteration (solid dev, dotted train)",
    width=1000,
    height=560,
)
fig.write_image(str(res / "blocked_curves.png"), format="png")
