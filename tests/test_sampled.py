"""HMM-sampled corpora: stream folders as a data source, and training on sampled token ids."""

import numpy as np
import pytest
import torch

from hmm_lang.config import apply_overrides
from hmm_lang.errors import HmmLangError
from hmm_lang.experiments.sampled import sample_corpus, sample_stream
from hmm_lang.hmm.model import CategoricalHMM, random_hmm
from hmm_lang.pretokenize import load_stream, split_stream
from hmm_lang.tokenizer import EOS, hf_dir, load_tokenizer


def _hmm_with_an_end(vocab: int, eos: int, seed: int = 0) -> CategoricalHMM:
    """A random HMM whose state 0 emits </s> with probability 0.5 (stories end)."""
    hmm = random_hmm(4, vocab, seed=seed)
    emit = hmm.emit.clone()
    emit[0] *= 0.5
    emit[0, eos] += 0.5
    return CategoricalHMM(hmm.start, hmm.trans, emit / emit.sum(-1, keepdim=True))


def test_sampled_stream_round_trip_and_split(tmp_path, tokenizers_dir):
    tok = load_tokenizer(hf_dir(tokenizers_dir, 1024))
    eos = tok.convert_tokens_to_ids(EOS)
    hmm = _hmm_with_an_end(len(tok), eos)
    stream, cut = sample_stream(hmm, tok, 60, eos, max_len=40, seed=1)
    assert stream.n_stories == 60 and cut < 60
    for i in range(stream.n_stories):  # every story ends with exactly one </s>
        s = stream.story(i)
        assert s[-1] == eos and eos not in s[:-1]
    hmm.save(tmp_path / "hmm.pt")
    out = sample_corpus(tmp_path / "hmm.pt", hf_dir(tokenizers_dir, 1024), tmp_path / "s", 60,
                        max_len=40, seed=1)  # fmt: skip
    back = load_stream(out)
    assert np.array_equal(back.tokens, stream.tokens) and back.n_bytes == stream.n_bytes
    train, valid = split_stream(back, 0.2, seed=0)
    assert train.n_stories + valid.n_stories == 60 and valid.n_stories > 0
    assert train.n_tokens + valid.n_tokens == back.n_tokens
    with pytest.raises(HmmLangError, match="exists"):
        sample_corpus(tmp_path / "hmm.pt", hf_dir(tokenizers_dir, 1024), out, 10)


def test_training_reads_a_sampled_stream_folder(tmp_path, tokenizers_dir):
    from hmm_lang.runs import load_run, run_streams
    from hmm_lang.transformer.train import train
    from tests.test_transformer import tiny_cfg

    tok = load_tokenizer(hf_dir(tokenizers_dir, 1024))
    eos = tok.convert_tokens_to_ids(EOS)
    _hmm_with_an_end(len(tok), eos).save(tmp_path / "hmm.pt")
    data = sample_corpus(tmp_path / "hmm.pt", hf_dir(tokenizers_dir, 1024), tmp_path / "s", 200,
                         max_len=64)  # fmt: skip
    cfg = apply_overrides(tiny_cfg(tokenizers_dir, steps=3), [f"data.data={data}"])
    run = load_run(train(cfg, tmp_path / "runs", progress=False))
    tr, va = run_streams(run)
    expect_tr, expect_va = split_stream(load_stream(data), cfg.data.valid_fraction, 0)
    assert np.array_equal(tr.tokens, expect_tr.tokens) and np.array_equal(
        va.tokens, expect_va.tokens
    )
    assert torch.isfinite(torch.tensor(run.valid_metrics[-1]["valid_bits_per_byte"]))
