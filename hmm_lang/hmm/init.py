"""Initialisations for EM: random Dirichlet, and a class-bigram start that escapes the plateau.

Random-init EM on real token streams sits near the symmetric point (unigram level) for many
iterations. The class-bigram start clusters tokens by their left and right context
distributions (k-means on Hellinger features, weighted by frequency), gives each cluster a
state whose emissions are its tokens' frequencies, and takes transitions from class bigram
counts: EM then starts at a class-bigram model's likelihood instead of the unigram's.

That start gives each token one state, and EM's multiplicative updates can barely move a token
to another state. The ``split`` start takes C = K / copies clusters and gives each cluster
``copies`` noisy copies sharing its emissions, so EM can split a cluster's tokens by context
(at K=64 on TinyStories it is ahead of the class-bigram start after 20 iterations). ``lvd``
(latent variable distillation, Liu et al. 2023) clusters a trained transformer's residual
stream: see :mod:`hmm_lang.hmm.lvd`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.clusters import context_features, kmeans
from hmm_lang.hmm.model import CategoricalHMM, random_hmm

log = logging.getLogger(__name__)

INITS = ("split", "class-bigram", "lvd", "random")
SPLIT_COPIES = 4  # noisy copies per cluster in the split start


def class_bigram_init(
    sequences: Sequence[np.ndarray],
    n_states: int,
    vocab_size: int,
    seed: int = 0,
    context: int = 256,
    noise: float = 0.1,
    clusters: int | None = None,
) -> CategoricalHMM:
    """An HMM whose states are token clusters (``clusters`` of them, default one per state;
    states beyond the clusters copy them): see the module docstring."""
    if n_states < 1:
        raise HmmLangError(f"the number of states must be at least 1, got {n_states}")
    rng = np.random.default_rng(seed)
    feats, used, unigram, pairs = context_features(sequences, vocab_size, context)
    n_clusters = min(clusters or n_states, n_states, len(used))
    assign = kmeans(
        feats, n_clusters, torch.from_numpy(np.sqrt(unigram[used])).float(), seed=seed
    ).numpy()
    # states beyond the clusters (K > used tokens) duplicate clusters; noise breaks the tie
    cluster_of_state = np.arange(n_states) % n_clusters
    share = 1.0 / np.bincount(cluster_of_state, minlength=n_clusters)[cluster_of_state]
    cls = np.zeros(vocab_size, dtype=np.int64)
    cls[used] = assign
    member = np.zeros((n_clusters, vocab_size))
    member[assign, used] = 1.0
    trans_c = member @ pairs @ member.T  # (C, C) class bigram counts
    starts = np.bincount(cls[[int(s[0]) for s in sequences]], minlength=n_clusters)
    emit = 1e-3 + member[cluster_of_state] * unigram * share[:, None]
    start = 0.1 / n_states + starts[cluster_of_state] * share
    trans = 0.1 / n_states + trans_c[np.ix_(cluster_of_state, cluster_of_state)] * share[None, :]
    params = []
    for m in (start, trans, emit):
        m = m * (1 + noise * rng.random(m.shape))
        params.append(torch.from_numpy(m / m.sum(-1, keepdims=True)).float())
    return CategoricalHMM(*params).validate()


def initial_hmm(
    init: str,
    sequences: Sequence[np.ndarray],
    n_states: int,
    vocab_size: int,
    seed: int = 0,
    run: str | None = None,
) -> CategoricalHMM:
    """``init`` is one of :data:`INITS`; ``lvd`` needs ``run``, a trained transformer run."""
    if init == "random":
        return random_hmm(n_states, vocab_size, seed=seed)
    if init == "class-bigram":
        return class_bigram_init(sequences, n_states, vocab_size, seed=seed)
    if init == "split":
        copies = min(SPLIT_COPIES, n_states)
        return class_bigram_init(
            sequences, n_states, vocab_size, seed=seed, noise=0.5, clusters=n_states // copies
        )
    if init == "lvd":
        from hmm_lang.hmm.lvd import lvd_init

        if run is None:
            raise HmmLangError("--init lvd needs --run RUN_DIR, a trained transformer run")
        return lvd_init(run, sequences, n_states, vocab_size, seed=seed)
    raise HmmLangError(f"unknown HMM initialisation {init!r}; choose one of {', '.join(INITS)}")
