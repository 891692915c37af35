"""One scale for every model: bits per token and bits per UTF-8 byte of the same text.

bits/byte = total nats / ln 2 / bytes, where the nats are summed over every token of every
validation story including its end-of-story token, and the bytes are the stories' UTF-8 bytes
plus one per story for that end-of-story token (see ``TokenStream.n_bytes``). Per-token losses
do not compare across vocabularies; per-byte losses do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hmm_lang.errors import HmmLangError


@dataclass(frozen=True)
class Score:
    nats: float  # total negative log-likelihood, natural log
    n_tokens: int
    n_bytes: int

    @property
    def bits_per_token(self) -> float:
        return self.nats / math.log(2) / self.n_tokens

    @property
    def bits_per_byte(self) -> float:
        return self.nats / math.log(2) / self.n_bytes

    def as_dict(self) -> dict:
        return {
            "nats": self.nats,
            "n_tokens": self.n_tokens,
            "n_bytes": self.n_bytes,
            "bits_per_token": self.bits_per_token,
            "bits_per_byte": self.bits_per_byte,
        }


def score(log_likelihood: float, n_tokens: int, n_bytes: int) -> Score:
    """A :class:`Score` from a total log-likelihood (nats, <= 0) over a text."""
    if n_tokens <= 0 or n_bytes <= 0:
        raise HmmLangError("cannot score an empty validation split; give it at least one story")
    return Score(-float(log_likelihood), int(n_tokens), int(n_bytes))


def check_vocab(model_vocab: int, tokenizer_vocab: int, what: str = "model") -> None:
    if model_vocab != tokenizer_vocab:
        raise HmmLangError(
            f"the {what} has vocab size {model_vocab} but the tokenizer has {tokenizer_vocab}; "
            "use the tokenizer the model was fitted with"
        )
