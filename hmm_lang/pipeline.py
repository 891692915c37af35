"""``hmm-lang run``: the whole study as named, idempotent stages in one run folder.

Each stage writes its outputs atomically and then a marker ``stages/<name>.json`` holding the
hash of its inputs; a rerun with the same inputs skips every stage whose marker matches, so a
killed run resumes where it stopped and never reads a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from hmm_lang import stages
from hmm_lang.atomic import write_text, write_yaml
from hmm_lang.corpus import load_corpus
from hmm_lang.errors import HmmLangError
from hmm_lang.profiles import PROFILES
from hmm_lang.records import mark_complete, new_run_dir, write_environment
from hmm_lang.stage_runner import RunState

log = logging.getLogger(__name__)


@contextlib.contextmanager
def folder_lock(lock_path: Path, what: Path):
    """An exclusive lock on ``lock_path`` (released when the process dies); a one-line error
    when another process holds it."""
    import fcntl

    f = open(lock_path, "a")  # noqa: SIM115 - kept open while the lock is held
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise HmmLangError(
            f"another hmm-lang run is working in {what}; wait for it to finish "
            "(or give another --out-dir)"
        ) from None
    try:
        yield
    finally:
        f.close()  # releases the lock


def _find_run(out_dir: Path, config: dict) -> Path | None:
    """The newest ``*_run`` folder under ``out_dir`` started with the same config."""
    for run in sorted(out_dir.glob("*_run*"), reverse=True):
        cfg = run / "run.yaml"
        if cfg.exists() and yaml.safe_load(cfg.read_text()) == config:
            return run
    return None


def run_pipeline(
    data: str = "default",
    valid: str | None = None,
    profile: str = "cpu",
    out_dir: str | Path = "records",
    tokenizers_dir: str | Path = "tokenizers",
    force: bool = False,
    max_stories: int | None = None,
    seed: int = 0,
    valid_fraction: float = 0.1,
) -> Path:
    """Run every stage of the study; return the run folder (``records/<time>_run``)."""
    if not 0.0 < valid_fraction < 1.0:
        raise HmmLangError(f"--valid-fraction must be in (0, 1), got {valid_fraction}")
    prof = PROFILES[profile]
    config = {
        "data": data,
        "valid": valid,
        "profile": profile,
        "profile_settings": json.loads(json.dumps(asdict(prof))),
        "max_stories": max_stories,
        "seed": seed,
        "tokenizers_dir": str(tokenizers_dir),
    }
    if valid_fraction != 0.1:  # recorded only when set, so earlier run folders still match
        config["valid_fraction"] = valid_fraction
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir / ".hmm_lang_run.lock", out_dir):  # find-or-create, one at a time
        run_dir = None if force else _find_run(out_dir, config)
        if run_dir is None:
            run_dir = new_run_dir(out_dir, "run")
            write_yaml(run_dir / "run.yaml", config)
            write_environment(run_dir)
        else:
            log.info("resuming %s", run_dir)
    with folder_lock(run_dir / ".lock", run_dir):  # one `hmm-lang run` per run folder
        _run(run_dir, data, valid, prof, tokenizers_dir, force, max_stories, seed, valid_fraction)
    return run_dir


def _run(
    run_dir, data, valid, prof, tokenizers_dir, force, max_stories, seed, valid_fraction=0.1
) -> None:
    corpus = load_corpus(
        data,
        valid,
        max_stories=max_stories,
        valid_fraction=valid_fraction,
        seed=seed,
        synthetic_stories=prof.synthetic_stories,
        max_valid_stories=prof.max_valid_stories,
    )
    log.info("corpus: %s", corpus.describe())
    data_args = {"data": data, "valid": valid, "max_stories": max_stories, "seed": seed}
    data_args["valid_fraction"] = valid_fraction
    state = RunState(run_dir, corpus, prof, Path(tokenizers_dir), force, data_args)
    for stage in tqdm(stages.STAGES, desc="hmm-lang run", unit="stage"):
        stage(state)
    write_text(run_dir / "summary.md", stages.summary_markdown(state))
    stages.stage_report(state)
    mark_complete(run_dir)
