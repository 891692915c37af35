"""``hmm-lang run``: the whole study as named, idempotent stages in one run folder.

Each stage writes its outputs atomically and then a marker ``stages/<name>.json`` holding the
hash of its inputs; a rerun with the same inputs skips every stage whose marker matches, so a
killed run resumes where it stopped and never reads a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from hmm_lang.atomic import write_json, write_text, write_yaml
from hmm_lang.corpus import Corpus, load_corpus
from hmm_lang.errors import HmmLangError
from hmm_lang.records import mark_complete, new_run_dir, write_environment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """Sizes of one run of the study."""

    synthetic_stories: int
    vocab_sizes: tuple[int, ...] = (1024, 2048, 4096)
    ladder_vocab_sizes: tuple[int, ...] | None = None  # the ladder's tokenizers (None: all)
    ngram_orders: tuple[int, ...] = (2, 3, 4, 5)
    hmm_states: tuple[int, ...] = (16, 64)
    hmm_max_iters: int = 300  # EM stops earlier when the dev split stops improving
    hmm_seeds: tuple[int, ...] = (0,)
    hmm_train_stories: int | None = None
    hmm_device: str = "cpu"  # dense EM's device; "auto": CUDA where there is one
    tokenizer_stories: int | None = None  # BPE trained on the first this many stories (None: all)
    cloned_clones: tuple[int, ...] = ()
    blocked_states: tuple[int, ...] = ()  # blocked HMMs in the ladder (K, in blocked_clusters)
    blocked_clusters: int = 128
    max_valid_stories: int | None = None
    transformer_config: str = "tiny"
    transformer_overrides: tuple[str, ...] = ()
    analysis_tokens: int = 1024  # tokens in the similarity figures
    pca_tokens: int = 100_000
    belief_states: int = 256
    anatomy_states: int = 32  # notebook 07's HMM
    belief_tokens: int = 200_000
    belief_k_folds: int = 5
    belief_boot: int = 1000
    belief_top_tokens: int = 256


PROFILES = {
    "smoke": Profile(
        synthetic_stories=2500,
        ladder_vocab_sizes=(1024,),
        ngram_orders=(2, 3),
        hmm_states=(8,),
        hmm_max_iters=2,
        hmm_train_stories=200,
        cloned_clones=(2,),
        blocked_states=(32,),
        blocked_clusters=16,
        max_valid_stories=100,
        transformer_config="tiny",
        analysis_tokens=128,
        pca_tokens=2000,
        belief_states=8,
        anatomy_states=8,
        belief_tokens=1500,
        belief_k_folds=3,
        belief_boot=50,
        belief_top_tokens=32,
    ),
    "cpu": Profile(
        synthetic_stories=20_000,
        hmm_states=(16, 64, 256),
        hmm_max_iters=60,
        hmm_train_stories=5000,
        cloned_clones=(1, 4, 16),
        blocked_states=(4096,),
        max_valid_stories=1000,
        transformer_config="cpu_small",
        transformer_overrides=(
            "train.steps=500",
            "train.eval_interval=100",
            "train.checkpoint_interval=100",
            "train.eval_stories=200",
        ),
        analysis_tokens=1024,
        pca_tokens=50_000,
        belief_states=64,
        belief_tokens=20_000,
    ),
    "gpu": Profile(
        synthetic_stories=200_000,
        hmm_states=(16, 64, 256, 1024),
        hmm_max_iters=300,
        hmm_seeds=(0, 1, 2),
        # HMMs on 200k stories (~45M tokens at V=4096): the full 2.1M would take days of
        # cloned EM (see `hmm-lang run --profile gpu --dry-run`)
        hmm_train_stories=200_000,
        hmm_device="auto",
        tokenizer_stories=200_000,
        cloned_clones=(1, 4, 16),
        transformer_config="gpu_base",
        analysis_tokens=4096,
    ),
}


@dataclass
class RunState:
    run_dir: Path
    corpus: Corpus
    profile: Profile
    tokenizers_dir: Path
    force: bool
    data_args: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)
    transformer_run: str | None = None
    keys: dict[str, str] = field(default_factory=dict)  # stage -> hash of its inputs


def _hash(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=8).hexdigest()


def run_stage(state: RunState, name: str, inputs: dict, fn: Callable[[Path], dict]) -> dict:
    """Run ``fn(stage_dir)`` unless a marker with the same input hash exists; return its result.

    ``inputs`` must name content, not paths: data fingerprints, configs, and the keys of the
    stages whose outputs this one reads (``state.keys``), so that a change anywhere upstream
    reruns everything downstream."""
    marker = state.run_dir / "stages" / f"{name}.json"
    key = _hash(inputs)
    state.keys[name] = key
    if marker.exists() and not state.force:
        try:
            done = json.loads(marker.read_text())
        except ValueError:
            log.warning("stage %s: unreadable marker %s; running the stage again", name, marker)
            done = {}
        if isinstance(done, dict) and done.get("inputs_hash") == key and "result" in done:
            log.info("stage %s: reusing outputs", name)
            state.timings[name] = done["seconds"]
            return done["result"]
    log.info("stage %s: running", name)
    t0 = time.perf_counter()
    stage_dir = state.run_dir / name
    stage_dir.mkdir(parents=True, exist_ok=True)
    result = fn(stage_dir)
    seconds = time.perf_counter() - t0
    write_json(marker, {"inputs_hash": key, "seconds": seconds, "result": result})
    state.timings[name] = seconds
    return result


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
    from hmm_lang import stages

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
