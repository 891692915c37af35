"""One stage of ``hmm-lang run``: the run's shared state, and the marker that lets a rerun skip
a stage whose inputs have not changed (:func:`run_stage`)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hmm_lang.atomic import write_json
from hmm_lang.corpus import Corpus
from hmm_lang.profiles import Profile

log = logging.getLogger(__name__)


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
