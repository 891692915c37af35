"""Ground truth for the belief probes, in the style of Shai et al. (2024): a corpus sampled
from a fitted HMM. On such text the HMM's filtering belief is the optimal predictive state, so
probes of a transformer trained on it show what a positive result looks like.

``sample_corpus`` writes a stream folder (:func:`hmm_lang.pretokenize.save_stream`) that
``hmm-lang train`` reads directly (``data.data=<folder>``): the sampled token ids are used as
they are, never decoded and re-encoded (BPE would not give the same ids back). Each story's
byte count is that of its decoded text, so bits per byte stay comparable.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hmm_lang.errors import HmmLangError
from hmm_lang.hmm.inference import sample
from hmm_lang.hmm.model import CategoricalHMM
from hmm_lang.pretokenize import TokenStream, save_stream

log = logging.getLogger(__name__)


def sample_stream(
    hmm: CategoricalHMM,
    tokenizer,
    n_stories: int,
    eos_id: int,
    max_len: int = 1024,
    seed: int = 0,
    batch: int = 512,
) -> tuple[TokenStream, int]:
    """``n_stories`` stories sampled from ``hmm``, each ended by its first ``eos_id`` (one that
    reaches ``max_len`` tokens first is cut there and given an ``eos_id``); returns the stream
    and the number of stories cut."""
    if n_stories < 2 or max_len < 2:
        raise HmmLangError(
            f"--stories and --max-len must be at least 2 (got {n_stories} and {max_len})"
        )
    if hmm.vocab_size != len(tokenizer):
        raise HmmLangError(
            f"the HMM's vocab size is {hmm.vocab_size} but the tokenizer's is {len(tokenizer)}; "
            "use the tokenizer the HMM was fitted with"
        )
    stories, cut = [], 0
    for a in tqdm(range(0, n_stories, batch), desc="sample HMM", unit="batch", leave=False):
        # seeds of different corpora never share a batch
        seqs, _ = sample(hmm, min(batch, n_stories - a), max_len, eos_id, seed=seed * 2**20 + a)
        for s in seqs:
            if s[-1] != eos_id:
                s, cut = np.append(s[:-1], eos_id), cut + 1
            stories.append(s.astype(np.uint16))
    offsets = np.zeros(len(stories) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in stories], out=offsets[1:])
    # UTF-8 bytes of each story's text (its </s> is counted as one byte by TokenStream.n_bytes)
    texts = tokenizer.batch_decode([s[:-1].tolist() for s in stories], skip_special_tokens=False)
    story_bytes = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64)
    return TokenStream(np.concatenate(stories), offsets, story_bytes, hmm.vocab_size, eos_id), cut


def sample_corpus(
    hmm_path: str | Path, tokenizer_dir: str | Path, out: str | Path, n_stories: int, **kw
) -> Path:
    """Sample ``n_stories`` from the HMM saved at ``hmm_path`` (fitted with the tokenizer at
    ``tokenizer_dir``) into the stream folder ``out``; returns ``out``."""
    from hmm_lang.tokenizer import EOS, load_tokenizer

    out = Path(out)
    if out.exists():
        raise HmmLangError(f"{out} exists; choose a new folder for the sampled corpus")
    hmm = CategoricalHMM.load(hmm_path)[0]
    tokenizer = load_tokenizer(tokenizer_dir)
    stream, cut = sample_stream(
        hmm, tokenizer, n_stories, tokenizer.convert_tokens_to_ids(EOS), **kw
    )
    log.info(
        "sampled %d stories, %d tokens (%d cut at max_len); mean %.1f tokens per story",
        stream.n_stories, stream.n_tokens, cut, stream.n_tokens / stream.n_stories,
    )  # fmt: skip
    return save_stream(stream, out)
