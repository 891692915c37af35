"""``hmm-lang run --dry-run``: every stage with sizes, memory and time, and nothing else happens."""

from __future__ import annotations

import socket

import pytest

from hmm_lang import estimate as E
from hmm_lang.cli import main
from hmm_lang.dryrun import _mem, _time, data_size, plan_run, stage_names
from tests.conftest import write_txt


def _forbid(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"the dry run called {what}")

    return fail


@pytest.fixture
def sealed(tmp_path, monkeypatch):
    """An empty working folder and HMM_LANG_HOME; loaders, training and the network forbidden."""
    import datasets

    import hmm_lang.corpus
    import hmm_lang.pipeline
    import hmm_lang.tokenizer

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HMM_LANG_HOME", str(work / "home"))
    monkeypatch.setattr(datasets, "load_dataset", _forbid("datasets.load_dataset"))
    monkeypatch.setattr(hmm_lang.corpus, "load_hub_split", _forbid("load_hub_split"))
    monkeypatch.setattr(hmm_lang.corpus, "load_corpus", _forbid("load_corpus"))
    monkeypatch.setattr(hmm_lang.pipeline, "run_pipeline", _forbid("run_pipeline"))
    monkeypatch.setattr(hmm_lang.tokenizer, "train_tokenizers", _forbid("train_tokenizers"))
    monkeypatch.setattr(socket, "create_connection", _forbid("the network"))
    return work


def _dry_run(work, capsys, *args) -> str:
    argv = [
        "run",
        "--dry-run",
        "--out-dir",
        str(work / "out"),
        "--tokenizers-dir",
        str(work / "tok"),
    ]
    rc = main([*argv, *args])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert list(work.iterdir()) == [], "the dry run created files"
    return out


def _stage_rows(out: str) -> list[str]:
    """The first word of every top-level table row, between the two rules."""
    body = out.split("-" * 100)[1]
    return [line.split()[0] for line in body.strip("\n").splitlines() if not line.startswith(" ")]


def test_smoke_dry_run_lists_every_stage_and_creates_nothing(sealed, capsys):
    out = _dry_run(sealed, capsys, "--profile", "smoke")
    assert _stage_rows(out) == stage_names()
    assert stage_names()[:6] == [
        "tokenizers",
        "token_stats",
        "transformer",
        "analysis",
        "ladder",
        "beliefs",
    ]
    assert "ESTIMATES, nothing was run" in out
    assert "default (SYNTHETIC)" in out
    plan = plan_run("default", profile="smoke")
    assert [s.name for s in plan.stages] == stage_names()
    assert all(s.seconds > 0 and s.ram >= E.BASE_RAM for s in plan.stages)
    assert plan.seconds == pytest.approx(sum(s.seconds for s in plan.stages))
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert total[1:3] == _mem(plan.ram).split() and " ".join(total[-2:]) == _time(plan.seconds)


def test_gpu_tinystories_dry_run_never_touches_the_hub(sealed, capsys):
    out = _dry_run(sealed, capsys, "--profile", "gpu", "--data", "tinystories")
    assert _stage_rows(out) == stage_names()
    assert "TinyStories (hub, not contacted), documented sizes (estimates)" in out
    assert f"train {E.TINYSTORIES_TRAIN_STORIES:,} stories, 1.90 GB" in out
    assert f"valid {E.TINYSTORIES_VALID_STORIES:,} stories" in out
    assert "gpu_base: 8L d512" in out
    assert "ASSUMPTION" in out  # the GPU rate is flagged as assumed


def test_bad_data_is_one_line_error_and_no_folder(sealed, capsys):
    rc = main(["run", "--dry-run", "--data", str(sealed / "missing.txt"), "--out-dir", "out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: data path") and "does not exist" in err[0]
    assert list(sealed.iterdir()) == []
    assert main(["run", "--dry-run", "--max-stories", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: max_stories must be at least 1")


def test_doubling_stories_doubles_tokens_time_and_data_memory(sealed):
    a = plan_run("tinystories", profile="gpu", max_stories=10_000)
    b = plan_run("tinystories", profile="gpu", max_stories=20_000)
    assert b.data.train_stories == 2 * a.data.train_stories == 20_000
    assert b.data.valid_stories == 2 * a.data.valid_stories == 2_000  # max_stories x 10%
    for v in (1024, 2048, 4096):
        assert abs(b.data.train_tokens(v) - 2 * a.data.train_tokens(v)) <= 2
    for stage in ("tokenizers", "token_stats"):
        assert b.stage(stage).seconds == pytest.approx(2 * a.stage(stage).seconds, rel=1e-3)
    hmm_a, hmm_b = a.stage("beliefs").parts[0], b.stage("beliefs").parts[0]
    assert hmm_b.seconds == pytest.approx(2 * hmm_a.seconds, rel=1e-3)
    # the HMM's lanes (kept whole for this much data) and per-story overhead double; its
    # tables and one batch's beliefs do not
    n = a.data.train_tokens(4096)
    grown = E.LANE_BYTES_PER_TOKEN * n + E.HMM_STORY_BYTES * 10_000
    assert hmm_b.ram - hmm_a.ram == pytest.approx(grown, rel=1e-3)
    # the transformer trains on a fixed token budget: more stories, fewer epochs, same time
    assert b.stage("transformer").parts[1].seconds == a.stage("transformer").parts[1].seconds


def test_streaming_bounds_the_memory_of_counting_and_lanes():
    full = 480_000_000  # TinyStories at V=4096
    # n-grams: the model grows with the data, counting is bounded by a chunk and the merge
    assert E.ngram_model_bytes(5, 4096, full) > 10 * E.ngram_model_bytes(5, 4096, full // 100)
    assert E.ngram_count_bytes(full) < 2 * E.ngram_count_bytes(E.NGRAM_CHUNK_TOKENS) < 4 * 2**30
    # dense EM beyond the lane cache holds one batch of lanes: only the start grows per token
    big, bigger = E.dense_hmm_bytes(256, 4096, full, 0), E.dense_hmm_bytes(256, 4096, 2 * full, 0)
    assert bigger - big == pytest.approx(E.HMM_INIT_BYTES_PER_TOKEN * full)


def test_local_text_file_is_counted(tmp_path):
    stories = [f"Once upon a time there was a story number {i}." for i in range(40)]
    path = write_txt(tmp_path / "stories.txt", stories)
    size = data_size(str(path))
    assert size.train_stories + size.valid_stories == 40
    assert size.valid_stories == 4
    assert size.train_bytes + size.valid_bytes == sum(len(s.encode()) + 1 for s in stories)
    capped = data_size(str(path), max_stories=10)
    assert (capped.train_stories, capped.valid_stories) == (10, 1)


def test_cost_model_matches_the_repository_measurements():
    from hmm_lang.hmm.fit import HMMFitConfig, batch_tokens_for

    # cpu_small at V=4096: 1,874,688 parameters (docs/results/ladder_4096.csv)
    assert E.transformer_parameters(4, 128, 4, 32, 512, 256, 4096) == 1_874_688
    # 1,028 validation stories, 846,425 bytes with one per </s>, 213,444 tokens at V=4096
    assert E.n_tokens(846_425 - 1_028, 1_028, 4096) == pytest.approx(213_444, rel=1e-3)
    assert E.bytes_per_token(3000) == pytest.approx(3.654 + (3.966 - 3.654) * 0.5507, rel=1e-4)
    for k in (8, 64, 256, 1024, 4096):
        assert E.em_batch_tokens(k, 10**9) == batch_tokens_for(HMMFitConfig(), k, 512)
    # distinct n-grams: the measured count at the anchor, never above the upper bound
    assert E.distinct_ngrams(2, 4096, 1_834_013) == 148_588
    for order in (2, 3, 5, 7):
        sizes = (10**3, 10**6, 10**9)
        counts = [E.distinct_ngrams(order, 4096, n) for n in sizes]
        assert counts == sorted(counts)
        assert all(c <= min(4096**order, n) for c, n in zip(counts, sizes, strict=True))
    # dense EM at K=256 runs at ~190k tokens/s on the reference machine (README, Benchmarks)
    assert 1 / E.dense_em_seconds(256, 1, 1) == pytest.approx(190_000, rel=0.1)


def test_the_plan_counts_one_cloned_fit_per_em_pseudocount():
    from hmm_lang.dryrun import CLONED_EM_FITS
    from hmm_lang.experiments.ladder import LadderConfig

    assert CLONED_EM_FITS == len(LadderConfig().cloned_smoothings)
