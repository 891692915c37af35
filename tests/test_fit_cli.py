"""fit-hmm and ngram end to end: run folders, metrics, bits per byte on one scale."""

import json
import math

import pytest
import yaml

from hmm_lang.cli import main
from hmm_lang.hmm import CategoricalHMM
from hmm_lang.hmm.cloned import ClonedHMM
from hmm_lang.hmm.fit import HMMFitConfig, fit_cloned, fit_dense
from hmm_lang.ngram import fit_and_score
from hmm_lang.pretokenize import pretokenize
from hmm_lang.tokenizer import hf_dir


@pytest.fixture(scope="module")
def streams(tokenizers_dir, corpus):
    tok = hf_dir(tokenizers_dir, 1024)
    return pretokenize(corpus.train, tok).head(300), pretokenize(corpus.valid, tok).head(60)


def test_models_on_one_scale(streams):
    train, valid = streams
    uni = fit_and_score(train, valid, 1, bos_id=0)[1]
    kn3 = fit_and_score(train, valid, 3, bos_id=0)[1]
    dense = fit_dense(train, valid, HMMFitConfig(states=8, max_iters=3))
    cloned = fit_cloned(train, valid, HMMFitConfig(cloned=True, clones=2, max_iters=3))
    for s in (uni, kn3, dense.valid_score, cloned.valid_score):
        assert s.n_bytes == valid.n_bytes and s.n_tokens == valid.n_tokens
        assert math.isclose(s.bits_per_byte * s.n_bytes, s.bits_per_token * s.n_tokens)
    assert kn3.bits_per_byte < uni.bits_per_byte
    assert dense.valid_score.bits_per_byte < uni.bits_per_byte  # the class-bigram start pays off
    assert cloned.valid_score.bits_per_byte < uni.bits_per_byte
    hist = dense.history
    assert len(hist) >= 1 and all("log_likelihood" in h for h in hist)


def test_fit_hmm_and_ngram_commands(tmp_path, tokenizers_dir, capsys):
    tok = str(hf_dir(tokenizers_dir, 1024))
    common = ["--max-stories", "300", "--tokenizer", tok, "--out-dir", str(tmp_path)]
    assert main(["fit-hmm", *common, "--states", "8", "--iters", "2"]) == 0
    assert main(["fit-hmm", *common, "--cloned", "--clones", "2", "--iters", "2"]) == 0
    assert main(["ngram", *common, "--order", "3"]) == 0
    runs = {r.name.split("_")[-1]: r for r in tmp_path.iterdir()}
    assert set(runs) == {"hmm8", "chmm2", "kn3"}
    runs = [runs["hmm8"], runs["chmm2"], runs["kn3"]]
    for run in runs:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["data"]["tokenizer"] == tok
        m = json.loads((run / "metrics.json").read_text())
        for key in ("bits_per_token", "bits_per_byte", "n_tokens", "n_bytes", "seconds"):
            assert key in m
    assert len(json.loads((runs[0] / "metrics.json").read_text())["history"]) == 2
    hmm, cfg = CategoricalHMM.load(runs[0] / "model.pt")
    assert hmm.n_states == 8 and cfg["states"] == 8
    assert ClonedHMM.load(runs[1] / "model.pt")[0].max_clones == 2


def test_fit_hmm_bad_input(tmp_path, tokenizers_dir, capsys):
    tok = str(hf_dir(tokenizers_dir, 1024))
    assert main(["fit-hmm", "--tokenizer", tok, "--states", "0", "--out-dir", str(tmp_path)]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["fit-hmm", "--tokenizer", str(tmp_path), "--out-dir", str(tmp_path)]) == 2
    assert "no tokenizer" in capsys.readouterr().err
    assert not any(tmp_path.glob("*_hmm*"))  # nothing half-made


def test_vocab_mismatch(streams, tokenizers_dir, corpus):
    from hmm_lang.errors import HmmLangError

    train, _ = streams
    other = pretokenize(corpus.valid, hf_dir(tokenizers_dir, 2048)).head(10)
    with pytest.raises(HmmLangError, match="vocab size"):
        fit_dense(train, other, HMMFitConfig(states=4, max_iters=1))
