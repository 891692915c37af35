"""The ladders of several vocab sizes in one figure (PNG): bits/byte against parameters and
against training seconds, from their ladder.csv files.

python docs/results/ladder_figures.py docs/results/ladder_1024.csv docs/results/ladder_2048.csv \
    docs/results/ladder_4096.csv docs/results/ladder_4096_best.csv
"""

import sys
from pathlib import Path

from hmm_lang.experiments.ladder_table import read_ladder_csv
from hmm_lang.plots.ladder import ladder_figure, seconds_figure

rows = [r for path in sys.argv[1:] for r in read_ladder_csv(path)]
# a model in two ladders of one vocab size (the KN rows of ladder_4096_best) is drawn once
rows = list({(r["vocab_size"], r["model"]): r for r in rows}.values())
out = Path("docs/results")
for name, fig in (
    ("ladder_all", ladder_figure(rows)),
    ("ladder_all_seconds", seconds_figure(rows)),
):
    fig.update_layout(width=1100, height=650)
    fig.write_image(str(out / f"{name}.png"), format="png")
