import json
import time

import numpy as np
import pytest

from hmm_lang import corpus as corpus_mod
from hmm_lang.corpus import load_corpus, open_source, split_mask
from hmm_lang.errors import HmmLangError
from tests.conftest import write_txt

STORIES = [f"Story {i}. Lily had a red ball.\nShe was happy." for i in range(50)]


def test_txt_format_splits_on_endoftext(tmp_path):
    p = write_txt(tmp_path / "s.txt", STORIES[:3])
    assert list(open_source(p).iter_stories()) == STORIES[:3]


def test_txt_last_story_without_separator(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("one\n<|endoftext|>\ntwo\n", encoding="utf-8")
    assert list(open_source(p).iter_stories()) == ["one", "two"]


def test_json_jsonl_parquet_and_save_to_disk_agree(tmp_path):
    import datasets

    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps({"text": s}) for s in STORIES))
    (tmp_path / "s.json").write_text(json.dumps([{"text": s} for s in STORIES]))
    ds = datasets.Dataset.from_dict({"text": STORIES})
    ds.to_parquet(str(tmp_path / "s.parquet"))
    ds.save_to_disk(str(tmp_path / "disk"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "diskdict"))
    for name in ["s.jsonl", "s.json", "s.parquet", "disk", "diskdict"]:
        assert list(open_source(tmp_path / name).iter_stories()) == STORIES, name


def test_batches_respect_batch_size(tmp_path):
    p = write_txt(tmp_path / "s.txt", STORIES)
    sizes = [len(b) for b in open_source(p).iter_batches(16)]
    assert sizes == [16, 16, 16, 2]


def test_split_is_deterministic_disjoint_and_complete(tmp_path):
    p = write_txt(tmp_path / "s.txt", STORIES)
    c1 = load_corpus(str(p), valid_fraction=0.2, seed=3)
    c2 = load_corpus(str(p), valid_fraction=0.2, seed=3)
    train, valid = list(c1.train.iter_stories()), list(c1.valid.iter_stories())
    assert train == list(c2.train.iter_stories()) and valid == list(c2.valid.iter_stories())
    assert set(train).isdisjoint(valid) and sorted(train + valid) == sorted(STORIES)
    assert 0 < len(valid) < len(train)
    other = list(load_corpus(str(p), valid_fraction=0.2, seed=4).valid.iter_stories())
    assert other != valid


def test_split_mask_independent_of_batching_and_near_fraction():
    idx = np.arange(100_000)
    mask = split_mask(idx, seed=0, fraction=0.1)
    assert abs(mask.mean() - 0.1) < 0.005
    assert np.array_equal(mask[500:900], split_mask(idx[500:900], 0, 0.1))


def test_valid_file_and_max_stories(tmp_path):
    p = write_txt(tmp_path / "a.txt", STORIES)
    v = write_txt(tmp_path / "b.txt", STORIES[:5])
    c = load_corpus(str(p), valid=str(v), max_stories=7)
    assert list(c.train.iter_stories()) == STORIES[:7]
    assert list(c.valid.iter_stories()) == STORIES[:1]  # max(1, 7 * 0.1)


def test_default_corpus_is_synthetic_and_labelled():
    c = load_corpus("default", synthetic_stories=50)
    assert c.synthetic and "SYNTHETIC" in c.describe()
    assert c.fingerprint() == load_corpus("default", synthetic_stories=50).fingerprint()
    assert c.fingerprint() != load_corpus("default", synthetic_stories=50, seed=1).fingerprint()


def _write(name, data: bytes):
    def make(d):
        (d / name).write_bytes(data)
        return d / name

    return make


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda d: d / "missing.txt", "does not exist"),
        (_write("e.txt", b""), "is empty"),
        (_write("x.csv", b"a"), "unknown data format"),
        (_write("b.txt", b"ok\n\xff\xfebad\n"), "not valid UTF-8"),
        (_write("j.jsonl", b'{"txt": 1}\n'), "no string 'text'"),
    ],
)
def test_bad_input_one_line_errors(tmp_path, setup, match):
    with pytest.raises(HmmLangError, match=match) as e:
        src = load_corpus(str(setup(tmp_path)))
        list(src.train.iter_stories())
    assert "\n" not in str(e.value)


def test_hub_offline_fails_fast_with_alternatives(monkeypatch):
    # A closed local port stands in for an unreachable hub on any machine.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    t0 = time.perf_counter()
    with pytest.raises(HmmLangError, match="--data default") as e:
        load_corpus("tinystories")
    assert time.perf_counter() - t0 < 10
    assert "roneneldan/TinyStories" in str(e.value) and "\n" not in str(e.value)


def test_hub_path_uses_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_dict({"text": [f"{split} story {i}" for i in range(5)]})

    monkeypatch.setattr(corpus_mod, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    c = load_corpus("tinystories", max_stories=3)
    assert list(c.train.iter_stories()) == ["train story 0", "train story 1", "train story 2"]
    assert next(c.valid.iter_stories()) == "validation story 0"
    assert calls == [("roneneldan/TinyStories", "train"), ("roneneldan/TinyStories", "validation")]
