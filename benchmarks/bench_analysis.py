"""Speed of the weight and activation analysis on a trained run.

    python benchmarks/bench_analysis.py [--run records/<timestamp>] [--tokens 100000]

Times (1) the full V x V embedding-similarity figure with its 8 x 8 coarse-graining (compute,
build, write HTML), against the similarity alone in numpy; (2) the residual-stream PCA over N
validation tokens (collection through run_with_cache plus PCA of every hook), against
scikit-learn's PCA on the final hook's materialised activations (same process).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from hmm_lang.analysis.residual import collect_residuals
from hmm_lang.plots.export import save_figure
from hmm_lang.plots.run_figures import similarity_figure
from hmm_lang.runs import find_run, load_run, run_streams, token_counts
from hmm_lang.tokenizer import BOS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None)
    ap.add_argument("--tokens", type=int, default=100_000)
    args = ap.parse_args()
    run = load_run(find_run(args.run))
    train, valid = run_streams(run)
    counts = token_counts(train, len(run.tokenizer))
    v = len(run.tokenizer)
    print(f"run {run.path}: V={v}, {run.config.model}")

    w = run.model.model.W_E.detach().numpy()
    t0 = time.perf_counter()
    n = w / np.linalg.norm(w, axis=1, keepdims=True)
    _ = n @ n.T
    t_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    fig = similarity_figure(run.model, run.tokenizer, "embed", "id", 8, counts)
    t_fig = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        (html,) = save_figure(fig, tmp, "sim", png=False)
        t_html = time.perf_counter() - t0
        size = html.stat().st_size / 1e6
    print(
        f"similarity {v}x{v} + 8x8 coarse-graining: figure {t_fig:.2f} s, HTML {t_html:.2f} s "
        f"({size:.0f} MB); numpy similarity alone {t_np:.2f} s"
    )

    bos = run.tokenizer.convert_tokens_to_ids(BOS)
    t0 = time.perf_counter()
    col = collect_residuals(run.model, valid, bos, n_tokens=args.tokens)
    t_collect = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = {h: col.pca(h) for h in col.hooks}
    t_pca = time.perf_counter() - t0
    print(
        f"residual PCA over {col.n:,} tokens, {len(col.hooks)} hooks: collection {t_collect:.1f} s, "
        f"PCA {t_pca:.3f} s, total {t_collect + t_pca:.1f} s"
    )
    try:
        from sklearn.decomposition import PCA
    except ImportError:
        return
    hook = col.hooks[-1]
    acts = np.concatenate([col.sample[hook]])  # the kept sample, for a like-for-like check
    t0 = time.perf_counter()
    sk = PCA().fit(acts.astype(np.float64))
    t_sk = time.perf_counter() - t0
    ours = results[hook].explained_variance_ratio[:5]
    print(
        f"sklearn PCA on the {len(acts):,}-point sample: {t_sk:.3f} s; top-5 variance ratio "
        f"sklearn {np.round(sk.explained_variance_ratio_[:5], 3)} vs streaming {np.round(ours, 3)}"
    )


if __name__ == "__main__":
    main()
