"""hmm_lang: how much of English can a Hidden Markov Model describe?

Corpus loading, BPE tokenizers, token statistics, HMMs and n-gram baselines over TinyStories,
scored on one scale (bits per UTF-8 byte).
"""

from hmm_lang.errors import HmmLangError

__all__ = ["HmmLangError"]
__version__ = "0.1.0"
