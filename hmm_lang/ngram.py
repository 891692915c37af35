"""N-gram baselines on token streams: add-k unigram and interpolated (modified) Kneser-Ney.

N-grams are packed into int64 keys (``bits`` per token, oldest token in the high bits), counted
with ``np.unique`` and looked up with ``np.searchsorted``, so fitting and scoring millions of
tokens is vectorised numpy. Every sequence is padded on the left with ``order - 1`` copies of
``bos_id``; every token of every sequence (its end-of-story token included) is predicted.

Interpolated KN (Chen & Goodman 1998), for level j (1 = unigram, n = the model's order):
    P_j(w | h) = max(c_j(h w) - D_j(c), 0) / T_j(h) + gamma_j(h) P_{j-1}(w | h')
    gamma_j(h) = (D_j1 N1(h .) + D_j2 N2(h .) + D_j3 N3+(h .)) / T_j(h)
with c_n the raw counts and c_j (j < n) the continuation counts N1+(. h w); an unseen context
passes the lower-order probability through. ``modified=True`` takes three discounts per level
from the counts of counts; otherwise one fixed ``discount`` (NLTK's ``KneserNeyInterpolated``).
The unigram level is interpolated with the uniform distribution (``interpolate_uniform``) so
that no token gets probability zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hmm_lang.atomic import atomic_path
from hmm_lang.errors import HmmLangError


def _bits(vocab_size: int) -> int:
    return max(1, math.ceil(math.log2(vocab_size)))


def ngram_keys(sequences: Sequence[np.ndarray], order: int, bos_id: int, bits: int) -> np.ndarray:
    """(N,) int64 key of the order-gram ending at every token (left-padded with ``bos_id``)."""
    keys = []
    for s in sequences:
        padded = np.concatenate([np.full(order - 1, bos_id, dtype=np.int64), s.astype(np.int64)])
        k = np.zeros(len(s), dtype=np.int64)
        for i in range(order):
            k = (k << bits) | padded[i : i + len(s)]
        keys.append(k)
    return np.concatenate(keys)


@dataclass
class _Level:
    keys: np.ndarray  # sorted unique j-gram keys
    counts: np.ndarray  # their (raw or continuation) counts
    ctx_keys: np.ndarray  # sorted unique contexts (j-1)-grams
    ctx_total: np.ndarray  # T(h)
    ctx_gamma_num: np.ndarray  # D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)
    discounts: np.ndarray  # (4,) discount for counts 0, 1, 2, 3+


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(sorted_keys, queries)
    idx = np.minimum(idx, len(sorted_keys) - 1)
    hit = sorted_keys[idx] == queries
    return np.where(hit, values[idx], 0)


def _discounts(counts: np.ndarray, modified: bool, discount: float) -> np.ndarray:
    if not modified:
        return np.array([0.0, discount, discount, discount])
    n = [int((counts == i).sum()) for i in (1, 2, 3, 4)]
    if min(n) == 0:  # too little data for count-of-counts estimates
        return np.array([0.0, 0.5, 1.0, 1.5])
    y = n[0] / (n[0] + 2 * n[1])
    d = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
    return np.array([0.0, *np.clip(d, 0.0, [1.0, 2.0, 3.0])])


def _level(
    keys: np.ndarray, counts: np.ndarray, bits: int, modified: bool, discount: float
) -> _Level:
    d = _discounts(counts, modified, discount)
    ctx = keys >> bits
    ctx_keys, inv = np.unique(ctx, return_inverse=True)
    total = np.bincount(inv, weights=counts).astype(np.float64)
    num = np.bincount(inv, weights=d[np.minimum(counts, 3)])
    return _Level(keys, counts, ctx_keys, total, num, d)


@dataclass
class KneserNeyModel:
    """An interpolated Kneser-Ney n-gram model over token ids (see the module docstring)."""

    order: int
    vocab_size: int
    bos_id: int
    modified: bool = True
    discount: float = 0.1
    interpolate_uniform: bool = True
    levels: list[_Level] = field(default_factory=list)

    @property
    def bits(self) -> int:
        return _bits(self.vocab_size)

    @property
    def n_parameters(self) -> int:
        """Stored n-gram counts and context statistics, all levels."""
        return int(sum(len(lv.keys) + 2 * len(lv.ctx_keys) for lv in self.levels))

    def fit(self, sequences: Sequence[np.ndarray]) -> KneserNeyModel:
        if self.order < 1:
            raise HmmLangError(f"n-gram order must be at least 1, got {self.order}")
        if self.order * self.bits > 63:
            raise HmmLangError(
                f"order {self.order} at vocab {self.vocab_size} needs {self.order * self.bits} "
                "bits per n-gram key (> 63); use a lower order"
            )
        if len(sequences) == 0:
            raise HmmLangError("no sequences to fit the n-gram model on")
        top_keys, top_counts = np.unique(
            ngram_keys(sequences, self.order, self.bos_id, self.bits), return_counts=True
        )
        levels = [None] * self.order
        distinct = top_keys
        counts = top_counts
        for j in range(self.order, 0, -1):  # j: n-gram length
            levels[j - 1] = _level(distinct, counts, self.bits, self.modified, self.discount)
            if j > 1:
                # continuation counts of the (j-1)-gram suffixes: distinct left extensions
                suffix = distinct & ((1 << (self.bits * (j - 1))) - 1)
                distinct, counts = np.unique(suffix, return_counts=True)
        self.levels = levels
        return self

    def token_log_probs(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) natural-log probability of every token of every sequence, in order."""
        return self.log_probs_of_keys(ngram_keys(sequences, self.order, self.bos_id, self.bits))

    def log_probs_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """(N,) log P(last token | its context) for packed order-gram ``keys``."""
        if not self.levels:
            raise HmmLangError("the n-gram model is not fitted; call fit() first")
        p = np.full(len(keys), 1.0 / self.vocab_size if self.interpolate_uniform else 0.0)
        for j, lv in enumerate(self.levels, start=1):
            key_j = keys & ((1 << (self.bits * j)) - 1)
            ctx_j = key_j >> self.bits
            total = _lookup(lv.ctx_keys, lv.ctx_total, ctx_j)
            seen = total > 0
            c = _lookup(lv.keys, lv.counts, key_j).astype(np.float64)
            tot = np.where(seen, total, 1.0)
            if j == 1 and not self.interpolate_uniform:
                p = c / tot
                continue
            alpha = np.maximum(c - lv.discounts[np.minimum(c, 3).astype(int)], 0.0) / tot
            gamma = _lookup(lv.ctx_keys, lv.ctx_gamma_num, ctx_j) / tot
            p = np.where(seen, alpha + gamma * p, p)
        with np.errstate(divide="ignore"):
            return np.log(p)

    def probability(self, context: Sequence[int], word: int) -> float:
        """P(word | context) for one query (context: the preceding tokens, oldest first)."""
        padded = [self.bos_id] * (self.order - 1) + [int(t) for t in context] + [int(word)]
        key = 0
        for t in padded[-self.order :]:
            key = (key << self.bits) | t
        return float(np.exp(self.log_probs_of_keys(np.array([key], dtype=np.int64))[0]))

    def save(self, path: str | Path) -> None:
        arrays = {}
        for j, lv in enumerate(self.levels):
            for name, value in vars(lv).items():
                arrays[f"l{j}_{name}"] = value
        meta = np.array(
            [
                self.order,
                self.vocab_size,
                self.bos_id,
                int(self.modified),
                int(self.interpolate_uniform),
            ]
        )
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=meta, discount=np.array(self.discount), **arrays)


def load_kneser_ney(path: str | Path) -> KneserNeyModel:
    try:
        with np.load(path) as z:
            order, v, bos, modified, uniform = (int(x) for x in z["meta"])
            m = KneserNeyModel(order, v, bos, bool(modified), float(z["discount"]), bool(uniform))
            m.levels = [
                _Level(*(z[f"l{j}_{f}"] for f in _Level.__dataclass_fields__)) for j in range(order)
            ]
    except (OSError, KeyError, ValueError) as e:
        raise HmmLangError(f"cannot read n-gram model {path} ({e}); refit it") from None
    return m


@dataclass
class UnigramModel:
    """Add-k smoothed unigram model."""

    vocab_size: int
    k: float = 1.0
    log_probs: np.ndarray | None = None

    @property
    def n_parameters(self) -> int:
        return self.vocab_size - 1

    def fit(self, sequences: Sequence[np.ndarray]) -> UnigramModel:
        counts = np.bincount(np.concatenate(sequences).astype(np.int64), minlength=self.vocab_size)
        p = (counts + self.k) / (counts.sum() + self.k * self.vocab_size)
        self.log_probs = np.log(p)
        return self

    def token_log_probs(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        return self.log_probs[np.concatenate(sequences).astype(np.int64)]


def fit_ngram(train, order: int = 5, bos_id: int | None = None, vocab_size: int | None = None):
    """A Kneser-Ney ``order``-gram (``order`` 1: the add-one unigram) fitted to ``train``, a
    :class:`~hmm_lang.pretokenize.TokenStream` or a list of token arrays. ``bos_id`` (the
    context of a story's first token) defaults to the stream's end-of-story id."""
    from hmm_lang.errors import HmmLangError

    if order < 1:
        raise HmmLangError(f"the n-gram order must be at least 1, got {order}")
    if hasattr(train, "stories"):
        seqs, v = train.stories(), vocab_size or train.vocab_size
        bos = train.eos_id if bos_id is None else bos_id
    else:
        seqs = list(train)
        v = vocab_size or int(max(int(np.max(s)) for s in seqs)) + 1
        bos = 0 if bos_id is None else bos_id
    if order == 1:
        return UnigramModel(v).fit(seqs)
    return KneserNeyModel(order, v, bos).fit(seqs)


def fit_and_score(train, valid, order: int, bos_id: int, modified: bool = True):
    """Fit on a training ``TokenStream``, score a validation one: ``(model, Score, seconds)``.

    ``order`` 1 is the add-one unigram model; higher orders are interpolated Kneser-Ney.
    """
    import time

    from hmm_lang.scoring import check_vocab, score

    check_vocab(train.vocab_size, valid.vocab_size, "training stream")
    t0 = time.perf_counter()
    train_seqs, valid_seqs = train.stories(), valid.stories()
    if order == 1:
        model = UnigramModel(train.vocab_size).fit(train_seqs)
    else:
        model = KneserNeyModel(order, train.vocab_size, bos_id, modified=modified).fit(train_seqs)
    ll = float(model.token_log_probs(valid_seqs).sum())
    return model, score(ll, valid.n_tokens, valid.n_bytes), time.perf_counter() - t0
