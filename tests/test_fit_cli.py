"""fit-hmm and ngram end to end: run folders, metrics, bits per byte on one scale."""

import json
import math

import pytest
import yaml

from hmm_lang.cli import main
from hmm_lang.hmm import CategoricalHMM
from hmm_lang.hmm.cloned import ClonedHMM
from hmm_lang.hmm.fit import HMMFitConfig, fit_dense
from hmm_lang.hmm.fit_cloned import fit_cloned
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


def test_fit_hmm_blocked_with_a_config_file(tmp_path, tokenizers_dir):
    tok = str(hf_dir(tokenizers_dir, 1024))
    conf = tmp_path / "best.yaml"
    conf.write_text("blocked: true\nstates: 64\nclusters: 16\nmax_iters: 2\nclustering: context\n")
    out = tmp_path / "runs"
    common = ["--max-stories", "300", "--tokenizer", tok, "--out-dir", str(out)]
    # flags override the file: 32 states in 16 clusters
    assert main(["fit-hmm", *common, "--config", str(conf), "--states", "32"]) == 0
    (run,) = out.iterdir()
    assert run.name.endswith("bhmm32x16") and not (run / ".incomplete").exists()
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_states"] == 32 and m["choices"]["clustering"] == "context"
    for key in ("bits_per_byte", "n_parameters", "seconds", "stop_reason"):
        assert key in m
    from hmm_lang.hmm.blocked import BlockedHMM

    assert BlockedHMM.load(run / "model.pt")[0].block_size == 2
    conf.write_text("blocked: true\ncolour: red\n")
    assert main(["fit-hmm", *common, "--config", str(conf)]) == 2
    assert len(list(out.iterdir())) == 1


def test_interrupt_and_late_errors_leave_no_run_folder(
    tmp_path, tokenizers_dir, capsys, monkeypatch
):
    import hmm_lang.hmm.fit as fit_mod
    from hmm_lang.errors import HmmLangError

    tok = str(hf_dir(tokenizers_dir, 1024))
    common = ["--max-stories", "300", "--tokenizer", tok, "--out-dir", str(tmp_path / "o")]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_mod, "fit_hmm", interrupted)
    assert main(["fit-hmm", *common, "--states", "4"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: interrupted") and "Traceback" not in "\n".join(err)

    def fails(*a, **k):
        raise HmmLangError("late failure")

    monkeypatch.setattr(fit_mod, "fit_hmm", fails)
    assert main(["fit-hmm", *common, "--states", "4"]) == 2
    assert list((tmp_path / "o").iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.undo()
    assert main(["fit-hmm", *common[:-1], str(blocker / "sub"), "--states", "4"]) == 2
    assert "error:" in capsys.readouterr().err


def test_one_run_per_folder_lock(tmp_path):
    from hmm_lang.errors import HmmLangError
    from hmm_lang.pipeline import folder_lock

    with folder_lock(tmp_path / ".lock", tmp_path):
        with pytest.raises(HmmLangError, match="another hmm-lang run is working"):
            with folder_lock(tmp_path / ".lock", tmp_path):
                pass
    with folder_lock(tmp_path / ".lock", tmp_path):  # released
        pass


def test_too_many_states_is_refused_before_any_work(tmp_path, tokenizers_dir, capsys):
    tok = str(hf_dir(tokenizers_dir, 1024))
    out = tmp_path / "o"
    assert main(["fit-hmm", "--tokenizer", tok, "--states", "100000", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "--no-memory-check" in err
    assert not out.exists() or not any(out.iterdir())
    assert main(["fit-hmm", "--tokenizer", tok, "--smoothing", "-1", "--out-dir", str(out)]) == 2
    assert (
        main(["fit-hmm", "--tokenizer", tok, "--max-train-stories", "-1", "--out-dir", str(out)])
        == 2
    )
    assert not out.exists() or not any(out.iterdir())


def test_the_best_recipe_file_is_a_valid_blocked_config():
    from pathlib import Path

    from hmm_lang.hmm.fit import HMMFitConfig, fit_settings

    path = Path(__file__).resolve().parents[1] / "configs" / "hmm_best.yaml"
    cfg = HMMFitConfig(**fit_settings(path)).validate()
    assert cfg.blocked and cfg.states % cfg.clusters == 0


def test_run_lock_between_two_real_processes_and_after_sigkill(tmp_path):
    import signal
    import subprocess
    import sys

    from hmm_lang.errors import HmmLangError
    from hmm_lang.pipeline import folder_lock

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from hmm_lang.pipeline import folder_lock\n"
         "with folder_lock(Path(sys.argv[1]), Path(sys.argv[2])):\n"
         "    print('held', flush=True); time.sleep(120)",
         str(tmp_path / ".lock"), str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(HmmLangError, match="another hmm-lang run is working"):
            with folder_lock(tmp_path / ".lock", tmp_path):
                pass
        holder.send_signal(signal.SIGKILL)  # a killed run leaves no stale lock behind
        holder.wait()
        with folder_lock(tmp_path / ".lock", tmp_path):
            pass
    finally:
        holder.kill()
