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
    return _discounts_from([int((counts == i).sum()) for i in (1, 2, 3, 4)], modified, discount)


def _discounts_from(n: list[int], modified: bool, discount: float) -> np.ndarray:
    """Discounts for counts 0, 1, 2, 3+ from ``n``, the numbers of n-grams seen 1..4 times."""
    if not modified:
        return np.array([0.0, discount, discount, discount])
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
        """Fit in memory (16 bytes per token held at once; :meth:`fit_stream` bounds it)."""
        self._check(len(sequences))
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

    def fit_stream(
        self, stream, chunk_tokens: int = 1 << 24, work_dir: str | Path | None = None
    ) -> KneserNeyModel:
        """Fit to a :class:`~hmm_lang.pretokenize.TokenStream` in bounded memory: the same
        model as :meth:`fit` on ``stream.stories()``, bit for bit, counted by an external
        sort-merge (:mod:`hmm_lang.ngram_counts`) in chunks of about ``chunk_tokens`` tokens.
        The arrays are memory-mapped files in a temporary folder under ``work_dir`` (default:
        the system's), unlinked at once: the mappings stay valid (POSIX) and the disk space
        is freed with the model."""
        import tempfile

        from hmm_lang.ngram_counts import chunk_keys, count_sorted

        self._check(stream.n_stories)
        bits = self.bits
        with tempfile.TemporaryDirectory(prefix="hmm_lang_ngram_", dir=work_dir) as tmp:
            folder = Path(tmp)
            blocks = chunk_keys(stream, self.order, self.bos_id, bits, chunk_tokens)
            distinct, counts = count_sorted(blocks, folder)
            levels = [None] * self.order
            for j in range(self.order, 0, -1):
                levels[j - 1] = self._level_sorted(distinct, counts, folder)
                if j > 1:
                    mask = (1 << (bits * (j - 1))) - 1
                    suffixes = (
                        np.asarray(distinct[a : a + chunk_tokens]) & mask
                        for a in range(0, len(distinct), chunk_tokens)
                    )
                    distinct, counts = count_sorted(suffixes, folder)
        self.levels = levels
        return self

    def _level_sorted(self, keys: np.ndarray, counts: np.ndarray, folder: Path) -> _Level:
        """:func:`_level` of sorted ``keys`` read piece by piece (each context group whole, in
        the same order, so the float sums are the same as the in-memory path's)."""
        from hmm_lang.ngram_counts import Spill, sorted_groups

        step = 1 << 22
        n = [0, 0, 0, 0]
        for a in range(0, len(counts), step):
            c = np.asarray(counts[a : a + step])
            for i in range(4):
                n[i] += int((c == i + 1).sum())
        d = _discounts_from(n, self.modified, self.discount)
        out = [Spill(folder, name, dt) for name, dt in (("ctx", np.int64), ("tot", float),
                                                         ("num", float))]  # fmt: skip
        for sl, u, inv in sorted_groups(keys, self.bits, step):
            c = np.asarray(counts[sl])
            out[0].append(u)
            out[1].append(np.bincount(inv, weights=c).astype(np.float64))
            out[2].append(np.bincount(inv, weights=d[np.minimum(c, 3)]))
        ctx_keys, total, num = (o.close() for o in out)
        return _Level(keys, counts, ctx_keys, total, num, d)

    def _check(self, n_sequences: int) -> None:
        if self.order < 1:
            raise HmmLangError(f"n-gram order must be at least 1, got {self.order}")
        if self.order * self.bits > 63:
            raise HmmLangError(
                f"order {self.order} at vocab {self.vocab_size} needs {self.order * self.bits} "
                "bits per n-gram key (> 63); use a lower order"
            )
        if n_sequences == 0:
            raise HmmLangError("no sequences to fit the n-gram model on")

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

    def stream_log_prob(self, stream, chunk_tokens: int = 1 << 24) -> float:
        """Total natural-log probability of a ``TokenStream``, ``chunk_tokens`` at a time."""
        from hmm_lang.ngram_counts import chunk_keys

        keys = chunk_keys(stream, self.order, self.bos_id, self.bits, chunk_tokens)
        return float(sum(self.log_probs_of_keys(k).sum() for k in keys))

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
        return self._from_counts(
            np.bincount(np.concatenate(sequences).astype(np.int64), minlength=self.vocab_size)
        )

    def fit_stream(self, stream, **_) -> UnigramModel:
        """:meth:`fit` on a ``TokenStream``, counted piece by piece (``stats.token_counts``)."""
        from hmm_lang.stats import token_counts

        return self._from_counts(token_counts(stream, self.vocab_size))

    def _from_counts(self, counts: np.ndarray) -> UnigramModel:
        p = (counts + self.k) / (counts.sum() + self.k * self.vocab_size)
        self.log_probs = np.log(p)
        return self

    def token_log_probs(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        return self.log_probs[np.concatenate(sequences).astype(np.int64)]

    def stream_log_prob(self, stream, chunk_tokens: int = 1 << 24) -> float:
        return float(
            sum(
                self.log_probs[np.asarray(stream.tokens[a : a + chunk_tokens], np.int64)].sum()
                for a in range(0, stream.n_tokens, chunk_tokens)
            )
        )


def fit_ngram(train, order: int = 5, bos_id: int | None = None, vocab_size: int | None = None):
    """A Kneser-Ney ``order``-gram (``order`` 1: the add-one unigram) fitted to ``train``, a
    :class:`~hmm_lang.pretokenize.TokenStream` or a list of token arrays. ``bos_id`` (the
    context of a story's first token) defaults to the stream's end-of-story id."""
    from hmm_lang.errors import HmmLangError

    if order < 1:
        raise HmmLangError(f"the n-gram order must be at least 1, got {order}")
    if hasattr(train, "stories"):  # a TokenStream: counted in bounded memory
        v = vocab_size or train.vocab_size
        bos = train.eos_id if bos_id is None else bos_id
        model = UnigramModel(v) if order == 1 else KneserNeyModel(order, v, bos)
        return model.fit_stream(train)
    seqs = list(train)
    v = vocab_size or int(max(int(np.max(s)) for s in seqs)) + 1
    bos = 0 if bos_id is None else bos_id
    if order == 1:
        return UnigramModel(v).fit(seqs)
    return KneserNeyModel(order, v, bos).fit(seqs)


def fit_and_score(train, valid, order: int, bos_id: int, modified: bool = True):
    """Fit on a training ``TokenStream``, score a validation one: ``(model, Score, seconds)``.

    ``order`` 1 is the add-one unigram model; higher orders are interpolated Kneser-Ney. Both
    are counted and scored chunk by chunk (bounded memory, see :meth:`KneserNeyModel.fit_stream`).
    """
    import time

    from hmm_lang.scoring import check_vocab, score

    check_vocab(train.vocab_size, valid.vocab_size, "training stream")
    t0 = time.perf_counter()
    if order == 1:
        model = UnigramModel(train.vocab_size).fit_stream(train)
    else:
        model = KneserNeyModel(order, train.vocab_size, bos_id, modified=modified)
        model.fit_stream(train)
    ll = model.stream_log_prob(valid)
    return model, score(ll, valid.n_tokens, valid.n_bytes), time.perf_counter() - t0
