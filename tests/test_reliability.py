"""Bad input and faults: one-line errors before any folder, rebuilt caches, nothing
half-written (the classes of the reliability audit)."""

import json
import os

import numpy as np
import pytest
import torch

from hmm_lang.cli import main
from hmm_lang.corpus import load_corpus
from hmm_lang.errors import HmmLangError
from hmm_lang.pretokenize import pretokenize
from hmm_lang.tokenizer import hf_dir
from tests.conftest import write_txt


def _nothing_in(path):
    return not path.exists() or not any(p for p in path.iterdir() if not p.name.startswith("."))


def test_corrupt_pretokenized_cache_is_rebuilt_with_a_warning(tokenizers_dir, tmp_path, caplog):
    data = write_txt(tmp_path / "s.txt", [f"Tom saw a cat number {i}." for i in range(40)])
    src = load_corpus(str(data)).train
    first = np.array(pretokenize(src, hf_dir(tokenizers_dir, 1024)).tokens)  # off the map
    (cache,) = [p for p in (hf_dir(tokenizers_dir, 1024) / "pretokenized").glob("*/tokens.u16")
                if p.stat().st_mtime_ns >= os.stat(data).st_mtime_ns]  # fmt: skip
    cache.write_bytes(cache.read_bytes()[:50])  # a truncated token file
    again = pretokenize(src, hf_dir(tokenizers_dir, 1024))
    assert np.array_equal(first, again.tokens)
    assert "unreadable" in caplog.text


def test_garbage_tokenizer_json_is_a_one_line_error(tokenizers_dir, tmp_path, corpus):
    import shutil

    bad = tmp_path / "HF_custom_tokenizer_1024"
    shutil.copytree(hf_dir(tokenizers_dir, 1024), bad)
    (bad / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    with pytest.raises(HmmLangError, match="corrupt, retrain it"):
        pretokenize(corpus.valid, bad)


def test_long_story_is_refused_cleanly(tmp_path):
    data = tmp_path / "one_line.txt"
    data.write_text("word" * 300_000 + "\n")  # 1.2M characters, no separator
    with pytest.raises(HmmLangError, match="above the 1,000,000 limit"):
        list(load_corpus(str(data), valid=str(data)).train.iter_stories())


def test_jsonl_errors_name_the_file_line_and_upper_case_suffix_works(tmp_path):
    good = tmp_path / "s.JSONL"
    good.write_text("".join(json.dumps({"text": f"story {i}"}) + "\n" for i in range(20)))
    assert len(list(load_corpus(str(good)).train.iter_stories())) > 0
    bad = tmp_path / "b.jsonl"
    lines = [json.dumps({"text": f"story {i}"}) for i in range(5)]
    lines.insert(3, '{"text": "broken')
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(HmmLangError, match="line 4 is not valid JSON"):
        list(load_corpus(str(bad), valid=str(good)).train.iter_stories())


def test_bad_command_values_fail_before_any_folder(tmp_path, tokenizers_dir, capsys):
    tok = str(hf_dir(tokenizers_dir, 1024))
    out = tmp_path / "o"
    cases = [
        ["ngram", "--tokenizer", tok, "--order", "0", "--out-dir", str(out)],
        ["experiment", "ladder", "--orders", "0", "--out-dir", str(out)],
        ["experiment", "ladder", "--vocab-sizes", "10", "--out-dir", str(out)],
        ["experiment", "ladder", "--n-boot", "1", "--out-dir", str(out)],
        ["experiment", "ladder", "--blocked-states", "100", "--blocked-clusters", "64",
         "--out-dir", str(out)],
        ["experiment", "ladder", "--device", "tpu", "--out-dir", str(out)],
        ["experiment", "beliefs", "--tokens", "0", "--out-dir", str(out)],
    ]  # fmt: skip
    if not torch.cuda.is_available():  # a dense-EM device this machine lacks
        cases.append(["experiment", "ladder", "--device", "cuda", "--out-dir", str(out)])
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), argv
        assert _nothing_in(out), argv


def test_atomic_writes_clean_up_after_a_killed_writer(tmp_path):
    from hmm_lang.atomic import write_text

    target = tmp_path / "metrics.json"
    (tmp_path / ".metrics.json.abc123.tmp").write_text("half")  # a SIGKILLed writer's leftover
    write_text(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_live_writers_temporary_is_not_taken_for_stale(tmp_path):
    import subprocess
    import sys

    from hmm_lang.atomic import _host, atomic_dir

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        mine = tmp_path / f".cache.{live.pid}.x1.tmp"  # another process building the same folder
        gone = tmp_path / f".cache.{dead.pid}.x2.tmp"  # a killed writer's leftover
        remote = tmp_path / f".cache.otherhost-{dead.pid}.x3.tmp"  # a writer on another node
        here = f".cache.{_host()}"
        mine_now, gone_now = (
            tmp_path / f"{here}-{live.pid}.x4.tmp",
            tmp_path / f"{here}-{dead.pid}.x5.tmp",
        )
        for d in (mine, gone, remote, mine_now, gone_now):
            d.mkdir()
        with atomic_dir(tmp_path / "cache") as d:
            (d / "f").write_text("1")
        assert mine.exists() and remote.exists() and mine_now.exists()
        assert not gone.exists() and not gone_now.exists()
        assert (tmp_path / "cache" / "f").exists()
        # a content-addressed cache: the writer that finishes second keeps the first's folder
        with atomic_dir(tmp_path / "cache", keep_existing=True) as d:
            (d / "f").write_text("2")
        assert (tmp_path / "cache" / "f").read_text() == "1"
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["cache"]
        assert not [p for p in tmp_path.glob(".cache.*.tmp") if p not in (mine, remote, mine_now)]
    finally:
        live.kill()
        live.wait()


def test_resume_survives_a_half_written_metrics_line(tmp_path, tokenizers_dir):
    from hmm_lang.transformer.train import train
    from tests.test_transformer import tiny_cfg

    part = train(tiny_cfg(tokenizers_dir), tmp_path / "r", stop_after=10, progress=False)
    with open(part / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "loss": 3.1')  # killed mid-line
    run = train(resume=part, progress=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(ln) for ln in lines)
    assert (run / "final_model.pt").exists() and not (run / ".incomplete").exists()


def test_loaders_skip_unfinished_run_folders(tmp_path, tokenizers_dir):
    from hmm_lang.runs import find_run
    from hmm_lang.transformer.train import train
    from tests.test_transformer import tiny_cfg

    done = train(tiny_cfg(tokenizers_dir), tmp_path, progress=False)
    part = train(tiny_cfg(tokenizers_dir), tmp_path, stop_after=10, progress=False)
    assert (part / ".incomplete").exists() and part.name > done.name
    assert find_run(None, tmp_path) == done


def test_parquet_reads_with_a_read_only_home(tmp_path, monkeypatch):
    """No Arrow cache is written for a local parquet file, so a read-only HOME is fine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"text": [f"Story {i} about a dog." for i in range(50)]}), path)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    try:
        c = load_corpus(str(path))
        n = sum(len(b) for b in c.train.iter_batches()) + sum(
            len(b) for b in c.valid.iter_batches()
        )
        assert n == 50
        assert list(home.iterdir()) == []
    finally:
        home.chmod(0o700)


def test_full_disk_during_torch_save_is_one_line(tmp_path, monkeypatch, tokenizers_dir, capsys):
    """torch reports a full disk as a RuntimeError; the CLI says which path and what to do."""
    from collections import namedtuple

    import torch

    import hmm_lang.atomic

    def full(*a, **k):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(hmm_lang.atomic.shutil, "disk_usage", lambda p: usage(10, 10, 0))
    tok = str(hf_dir(tokenizers_dir, 1024))
    argv = ["fit-hmm", "--max-stories", "200", "--tokenizer", tok, "--states", "4",
            "--iters", "1", "--out-dir", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no space left on the device writing") and "model.pt" in err
    assert _nothing_in(tmp_path / "o")


def test_run_with_a_relative_data_path_opens_from_another_folder(
    tmp_path, tokenizers_dir, monkeypatch
):
    """Notebooks run from notebooks/: a run trained with --data stories.txt must still open."""
    from hmm_lang.config import apply_overrides
    from hmm_lang.runs import load_run, run_streams
    from hmm_lang.synthetic import generate_stories
    from hmm_lang.transformer.train import train
    from tests.test_transformer import tiny_cfg

    write_txt(tmp_path / "stories.txt", list(generate_stories(300, seed=0)))
    monkeypatch.chdir(tmp_path)
    cfg = apply_overrides(tiny_cfg(tokenizers_dir), ["data.data=stories.txt"])
    run = train(cfg, tmp_path / "records", progress=False)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    train_stream, valid = run_streams(load_run(run))
    assert train_stream.n_stories > 0 and valid.n_stories > 0


def test_overwritten_cache_contents_are_rebuilt_not_scored(tokenizers_dir, tmp_path, caplog):
    """A token file of the right size whose ids lie past the vocabulary (overwritten with
    0xFFFF) is rebuilt like a truncated one, never read as tokens."""
    data = write_txt(tmp_path / "s.txt", [f"Ann had a red ball {i}." for i in range(40)])
    src = load_corpus(str(data)).train
    first = np.array(pretokenize(src, hf_dir(tokenizers_dir, 1024)).tokens)
    (cache,) = [p for p in (hf_dir(tokenizers_dir, 1024) / "pretokenized").glob("*/tokens.u16")
                if p.stat().st_mtime_ns >= os.stat(data).st_mtime_ns]  # fmt: skip
    cache.write_bytes(b"\xff" * cache.stat().st_size)
    again = pretokenize(src, hf_dir(tokenizers_dir, 1024))
    assert np.array_equal(first, again.tokens)
    assert "unreadable" in caplog.text


def test_more_bad_values_fail_before_any_folder(tmp_path, tokenizers_dir, capsys):
    """The second reliability audit's findings: each one line, exit 2, nothing created."""
    tok = str(hf_dir(tokenizers_dir, 1024))
    out = tmp_path / "o"
    fit = ["fit-hmm", "--tokenizer", tok, "--states", "4", "--out-dir", str(out)]
    cases = [
        (fit + ["--device", "tpu"], "--device"),
        (fit + ["--online", "--minibatch-stories", "0"], "--minibatch-stories"),
        (["experiment", "ladder", "--blocked-states", "64", "--blocked-block-size", "0",
          "--out-dir", str(out)], "--blocked-block-size"),
        (["experiment", "starts", "--tokenizer", tok, "--states", "0", "--out-dir", str(out)],
         "--states"),
        (["experiment", "starts", "--tokenizer", tok, "--inits", "lvd", "--out-dir", str(out)],
         "--run"),
        (["analyze", "--top-n", "0", "--records-dir", str(out)], "--top-n"),
        (["notebooks", "--smoke", "--only", "99_no_such", "--records-dir", str(out)],
         "no notebook named 99_no_such"),
        (["run", "--profile", "smoke", "--valid-fraction", "0", "--out-dir", str(out)],
         "--valid-fraction"),
    ]  # fmt: skip
    for argv, named in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and named in err[-1], (argv, err[-1:])
        assert "Traceback" not in "\n".join(err), argv
        assert _nothing_in(out), argv


def test_an_error_inside_a_progress_bar_starts_its_own_line(tmp_path, tokenizers_dir, capsys):
    bad = tmp_path / "b.jsonl"
    lines = [json.dumps({"text": f"story {i}"}) for i in range(30)]
    lines.insert(3, '{"text": "broken')
    bad.write_text("\n".join(lines) + "\n")
    tok = str(hf_dir(tokenizers_dir, 1024))
    argv = ["ngram", "--data", str(bad), "--tokenizer", tok, "--order", "2"]
    assert main(argv + ["--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [x for x in err if "error:" in x] == [x for x in err if x.startswith("error: ")]


def test_a_reused_tokenizer_sweeps_a_killed_swaps_leftovers(tmp_path, corpus):
    import subprocess
    import sys

    from hmm_lang.atomic import _host
    from hmm_lang.tokenizer import custom_dir, train_tokenizers

    train_tokenizers(corpus.train, [1024], tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = [
        tmp_path / f".{d.name}.{_host()}-{dead.pid}.x.tmp"
        for d in (hf_dir(tmp_path, 1024), custom_dir(tmp_path, 1024))
    ]
    for d in left:
        (d / "old").mkdir(parents=True)  # what a SIGKILL during the folder swap leaves
    train_tokenizers(corpus.train, [1024], tmp_path)  # reused, not retrained
    assert not any(d.exists() for d in left)
