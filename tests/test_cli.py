import subprocess
import sys
from pathlib import Path

import pytest

from hmm_lang.cli import build_parser, main

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def test_console_script_help():
    script = Path(sys.executable).parent / "hmm-lang"  # the venv's console script
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "tokenizers" in out.stdout and "run" in out.stdout


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd):
    out = subprocess.run(
        [sys.executable, "-m", "hmm_lang.cli", cmd, "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage: hmm-lang " + cmd in out.stdout


def test_bad_input_is_one_line_error(tmp_path, capsys):
    assert (
        main(["tokenizers", "--data", str(tmp_path / "nope.txt"), "--out-dir", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data path") and "\n" not in err


def test_tokenizers_and_stats_commands(tmp_path, capsys):
    tok = tmp_path / "tok"
    args = ["--max-stories", "2500", "--vocab-sizes", "512", "1024"]
    assert main(["tokenizers", *args, "--out-dir", str(tok)]) == 0
    assert "'Hello, world!' ->" in capsys.readouterr().out
    assert (tok / "custom_tokenizer_512" / "tokenizer.json").exists()
    out = tmp_path / "stats"
    assert main(["stats", *args, "--tokenizers-dir", str(tok), "--out", str(out)]) == 0
    assert (out / "rank_frequency.html").exists() and (out / "token_stats.csv").exists()
    assert len((out / "token_stats.csv").read_text().splitlines()) == 3


def test_public_api_and_its_reference_page():
    """Every public name resolves, and docs/api.md is what the generator writes today."""
    from pathlib import Path

    import hmm_lang
    import hmm_lang.pretokenize  # the submodule of the same name must not shadow the function
    from hmm_lang.apidoc import api_markdown

    assert callable(hmm_lang.pretokenize)
    for name in hmm_lang.__all__:
        assert getattr(hmm_lang, name) is not None
    page = Path(__file__).resolve().parents[1] / "docs" / "api.md"
    assert page.read_text() == api_markdown(), "run python -m hmm_lang.apidoc"


def test_apidoc_refuses_an_option_as_its_output(tmp_path, monkeypatch):
    from hmm_lang.apidoc import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="^error: usage"):
        main(["--help"])
    assert not (tmp_path / "--help").exists()
    main(["api.md"])
    assert (tmp_path / "api.md").read_text().startswith("# hmm_lang public API")


def test_train_tokenizers_accepts_a_path_or_a_list(tmp_path):
    from hmm_lang import load_tokenizer, train_tokenizers
    from hmm_lang.synthetic import generate_stories

    stories = list(generate_stories(300, seed=0))
    path = tmp_path / "stories.txt"
    path.write_text("".join(f"{s}\n<|endoftext|>\n" for s in stories))
    a = train_tokenizers(str(path), (300,), tmp_path / "a")[300]
    b = train_tokenizers(stories, (300,), tmp_path / "b")[300]
    enc = lambda d: load_tokenizer(d)("Tom saw a cat.")["input_ids"]  # noqa: E731
    assert enc(a) == enc(b)
