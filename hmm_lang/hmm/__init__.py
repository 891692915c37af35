"""Hidden Markov models over token streams: dense categorical HMMs and cloned HMMs."""

from hmm_lang.hmm.batching import LaneBatch, pack_lanes
from hmm_lang.hmm.em import e_step, fit_em, m_step
from hmm_lang.hmm.inference import (
    HMMStats,
    expected_counts,
    filter_beliefs,
    forward,
    log_likelihood,
    posteriors,
    sample,
    viterbi,
)
from hmm_lang.hmm.model import CategoricalHMM, random_hmm

__all__ = [
    "CategoricalHMM",
    "HMMStats",
    "LaneBatch",
    "e_step",
    "expected_counts",
    "filter_beliefs",
    "fit_em",
    "forward",
    "log_likelihood",
    "m_step",
    "pack_lanes",
    "posteriors",
    "random_hmm",
    "sample",
    "viterbi",
]
