import itertools
import json
import os

import pytest

from hmm_lang.corpus import load_corpus
from hmm_lang.errors import HmmLangError
from hmm_lang.tokenizer import (
    SPECIAL_TOKENS,
    custom_dir,
    hf_dir,
    load_tokenizer,
    token_pieces,
    train_tokenizer,
)


@pytest.mark.parametrize("v", [1024, 2048, 4096])
def test_layout_and_exact_vocab_size(tokenizers_dir, v):
    assert (custom_dir(tokenizers_dir, v) / "tokenizer.json").exists()
    assert (hf_dir(tokenizers_dir, v) / "tokenizer.json").exists()
    assert (hf_dir(tokenizers_dir, v) / "tokenizer_config.json").exists()
    tok = load_tokenizer(hf_dir(tokenizers_dir, v))
    assert len(tok) == v
    assert tok.bos_token == "<s>" and tok.eos_token == "</s>"
    assert tok.pad_token == "<pad>" and tok.unk_token == "<unk>"
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    data = json.loads((custom_dir(tokenizers_dir, v) / "tokenizer.json").read_text())
    assert data["model"]["type"] == "BPE" and data["pre_tokenizer"]["type"] == "ByteLevel"


@pytest.mark.parametrize("v", [1024, 4096])
def test_round_trip_on_stories_and_odd_text(tokenizers_dir, corpus, v):
    tok = load_tokenizer(hf_dir(tokenizers_dir, v))
    texts = list(corpus.valid.iter_stories())[:50]
    texts += ["Ünïcödé 😀 text\twith  spaces\n\nand lines", "  leading space", ""]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text


def test_pieces_helper(tokenizers_dir):
    tok = load_tokenizer(custom_dir(tokenizers_dir, 4096))  # the custom dir resolves too
    assert token_pieces(tok, "Hello, Lily!") == ["Hello", ",", " Lily", "!"]
    text = "Once upon a time, a zebra-ish thing!"
    assert "".join(token_pieces(tok, text)) == text


def test_larger_vocab_gives_fewer_tokens(tokenizers_dir, corpus):
    text = " ".join(list(corpus.valid.iter_stories())[:20])
    n = [
        len(load_tokenizer(hf_dir(tokenizers_dir, v))(text)["input_ids"])
        for v in (1024, 2048, 4096)
    ]
    assert n[0] > n[1] > n[2]


def test_identical_tokenizer_is_reused_unless_forced(tmp_path):
    src = load_corpus("default", synthetic_stories=300).train
    train_tokenizer(src, 512, tmp_path)
    path = custom_dir(tmp_path, 512) / "tokenizer.json"
    mtime = os.stat(path).st_mtime_ns
    train_tokenizer(src, 512, tmp_path)
    assert os.stat(path).st_mtime_ns == mtime
    train_tokenizer(src, 512, tmp_path, force=True)
    assert os.stat(path).st_mtime_ns != mtime
    other = load_corpus("default", synthetic_stories=300, seed=1).train
    train_tokenizer(other, 512, tmp_path)  # different data: retrained
    assert (
        json.loads((custom_dir(tmp_path, 512) / "hmm_lang.json").read_text())["data_fingerprint"]
        == other.fingerprint()
    )


def test_a_kill_between_the_two_folders_never_mixes_tokenizers(tmp_path, monkeypatch):
    """New HF folder beside the old custom folder (a kill between the two replacements): the
    pair is not reused for either corpus; the next call retrains a matching pair."""
    import hmm_lang.tokenizer as tk

    a = load_corpus("default", synthetic_stories=300).train
    b = load_corpus("default", synthetic_stories=300, seed=1).train
    train_tokenizer(a, 512, tmp_path)
    real = tk.atomic_dir
    calls = []

    def dies_on_the_second(path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, before the custom folder is replaced
        return real(path)

    monkeypatch.setattr(tk, "atomic_dir", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(b, 512, tmp_path)
    monkeypatch.setattr(tk, "atomic_dir", real)
    spec = lambda d: json.loads((d / "hmm_lang.json").read_text())["data_fingerprint"]  # noqa: E731
    assert spec(hf_dir(tmp_path, 512)) == b.fingerprint()  # the mixed state
    assert spec(custom_dir(tmp_path, 512)) == a.fingerprint()
    path = custom_dir(tmp_path, 512) / "tokenizer.json"
    mtime = os.stat(path).st_mtime_ns
    train_tokenizer(a, 512, tmp_path)  # not reused: retrained as a pair
    assert os.stat(path).st_mtime_ns != mtime
    assert spec(hf_dir(tmp_path, 512)) == spec(custom_dir(tmp_path, 512)) == a.fingerprint()
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary folder left behind


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_atomic_dir_keeps_the_old_folder_until_the_new_one_is_complete(
    tmp_path, monkeypatch, exchange
):
    import hmm_lang.atomic
    from hmm_lang.atomic import atomic_dir

    if not exchange:
        monkeypatch.setattr(hmm_lang.atomic, "_exchange", lambda a, b: False)

    target = tmp_path / "art"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "x").write_text("half")
        raise RuntimeError("killed")
    assert (target / "x").read_text() == "old"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("new")
    assert (target / "x").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_vocab_below_minimum(tmp_path):
    src = load_corpus("default", synthetic_stories=10).train
    with pytest.raises(HmmLangError, match="below 260"):
        train_tokenizer(src, 200, tmp_path)


def test_corpus_too_small_is_reported_and_leaves_nothing(tmp_path):
    src = load_corpus("default", synthetic_stories=20).train
    with pytest.raises(HmmLangError, match="supports only .* fewer than vocab size 4096"):
        train_tokenizer(src, 4096, tmp_path / "tok")
    assert not any((tmp_path / "tok").glob("*")) if (tmp_path / "tok").exists() else True


def test_empty_corpus(tmp_path):
    p = tmp_path / "only_separators.txt"
    p.write_text("<|endoftext|>\n\n<|endoftext|>\n")
    src = load_corpus(str(p), valid=str(p)).train
    with pytest.raises(HmmLangError, match="no stories"):
        train_tokenizer(src, 512, tmp_path / "tok")
    assert not (tmp_path / "tok" / "custom_tokenizer_512").exists()


def test_missing_tokenizer_message(tmp_path):
    with pytest.raises(HmmLangError, match="hmm-lang tokenizers"):
        load_tokenizer(tmp_path)


def test_training_on_a_sample_is_recorded_and_equals_training_on_that_sample(tmp_path):
    src = load_corpus("default", synthetic_stories=600).train
    first = list(itertools.islice((s for b in src.iter_batches(1000) for s in b), 250))
    train_tokenizer(src, 512, tmp_path / "a", sample_stories=250)
    train_tokenizer(first, 512, tmp_path / "b")
    meta = json.loads((custom_dir(tmp_path / "a", 512) / "hmm_lang.json").read_text())
    assert meta["sample_stories"] == 250 and meta["n_stories"] == 250
    same = [(custom_dir(tmp_path / d, 512) / "vocab.json").read_text() for d in "ab"]
    assert same[0] == same[1]  # the same merges as training on exactly those stories
    path = custom_dir(tmp_path / "a", 512) / "tokenizer.json"
    mtime = os.stat(path).st_mtime_ns
    train_tokenizer(src, 512, tmp_path / "a", sample_stories=300)  # another sample: retrained
    assert os.stat(path).st_mtime_ns != mtime
