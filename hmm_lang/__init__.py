"""hmm_lang: how much of English can a Hidden Markov Model describe?

Corpus loading, BPE tokenizers, token statistics, HMMs (dense, cloned, blocked), n-gram
baselines and small TransformerLens transformers over TinyStories, scored on one scale (bits
per UTF-8 byte), with the analyses and figures of the study. The names below are the public
face (``from hmm_lang import fit_hmm``); they are imported on first use, so ``import hmm_lang``
stays light. ``docs/api.md`` lists them with their signatures.
"""

from __future__ import annotations

import importlib

from hmm_lang.errors import HmmLangError

# public name -> module that defines it
_API = {
    # data and tokens
    "load_corpus": "hmm_lang.corpus",
    "train_tokenizers": "hmm_lang.tokenizer",
    "load_tokenizer": "hmm_lang.tokenizer",
    "pretokenize": "hmm_lang.pretokenize",
    "TokenStream": "hmm_lang.pretokenize",
    "collect_token_stats": "hmm_lang.stats",
    # models
    "fit_hmm": "hmm_lang.hmm.fit",
    "HMMFitConfig": "hmm_lang.hmm.fit",
    "FitResult": "hmm_lang.hmm.fit",
    "CategoricalHMM": "hmm_lang.estimator",
    "BlockedHMM": "hmm_lang.hmm.blocked",
    "ClonedHMM": "hmm_lang.hmm.cloned",
    "fit_ngram": "hmm_lang.ngram",
    "HookedTransformerModel": "hmm_lang.transformer",
    "train": "hmm_lang.transformer.train",
    "load_run": "hmm_lang.runs",
    "load_config": "hmm_lang.config",
    # analysis: pure functions of tensors
    "cosine_similarity_matrix": "hmm_lang.analysis.embeddings",
    "coarse_grain": "hmm_lang.analysis.embeddings",
    "qk_circuit": "hmm_lang.analysis.circuits",
    "ov_circuit": "hmm_lang.analysis.circuits",
    "attention_patterns": "hmm_lang.analysis.circuits",
    "collect_residuals": "hmm_lang.analysis.residual",
    "pca": "hmm_lang.analysis.residual",
    "cv_predictions": "hmm_lang.analysis.probing",
    # figures: each returns a plotly go.Figure
    "similarity_heatmap": "hmm_lang.plots.embeddings",
    "similarity_figure": "hmm_lang.plots.run_figures",
    "coarse_grained_figure": "hmm_lang.plots.embeddings",
    "circuit_figure": "hmm_lang.plots.circuits",
    "attention_patterns_figure": "hmm_lang.plots.circuits",
    "explained_variance_figure": "hmm_lang.plots.residual",
    "pca_scatter_figure": "hmm_lang.plots.residual",
    "rank_frequency_figure": "hmm_lang.plots.token_stats",
    "ladder_figure": "hmm_lang.plots.ladder",
    "belief_r2_figure": "hmm_lang.plots.beliefs",
    "save_figure": "hmm_lang.plots.export",
    # experiments
    "run_ladder": "hmm_lang.experiments.ladder",
    "run_beliefs": "hmm_lang.experiments.beliefs",
    "paired_rows": "hmm_lang.experiments.paired",
}

# ``pretokenize`` is both a submodule and a public function: importing the submodule sets the
# package attribute to the module, so bind the function eagerly (after that import)
from hmm_lang.pretokenize import pretokenize  # noqa: E402, F401

__all__ = ["HmmLangError", *_API]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hmm_lang' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
