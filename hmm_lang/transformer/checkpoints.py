"""Training checkpoints: self-describing state files, and the checks a resume makes first.

A checkpoint holds the model, optimizer, scheduler step, RNG states, sampler position, dev-stop
state and config (as nanoGPT's do), so ``hmm-lang train --resume`` reproduces the uninterrupted
run; ``inputs.json`` (content hashes of the data and tokenizer) and the config must not change.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from hmm_lang.atomic import atomic_path
from hmm_lang.config import RunConfig
from hmm_lang.errors import HmmLangError
from hmm_lang.transformer.dev_stop import DevStop


def save_checkpoint(
    path: Path,
    model,
    optimizer,
    step: int,
    sampler,
    cfg: RunConfig,
    dev_stop: DevStop | None = None,
) -> None:
    state = {
        "kind": "hmm_lang_checkpoint",
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"step": step},  # the schedule is a pure function of the step
        "step": step,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        "sampler": sampler.state_dict(),
        "config": cfg.to_dict(),
        "dev_stop": dev_stop.state_dict() if dev_stop is not None else None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise HmmLangError(
            f"checkpoint {path} is truncated or corrupt ({type(e).__name__}); delete it to resume "
            "from the one before, or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("kind") != "hmm_lang_checkpoint":
        raise HmmLangError(f"{path} is not an hmm_lang training checkpoint")
    return state


def input_digests(train_stream, valid_stream, tokenizer_dir: Path) -> dict:
    """Content hashes of what a run trains and evaluates on: ``inputs.json`` of the run."""
    import hashlib

    tok = hashlib.blake2b((Path(tokenizer_dir) / "tokenizer.json").read_bytes(), digest_size=12)
    return {
        "train_tokens": train_stream.digest(),
        "valid_tokens": valid_stream.digest(),
        "tokenizer": tok.hexdigest(),
    }


def check_resume(run_dir: Path, digests: dict, cfg: RunConfig, ckpt: Path | None) -> None:
    """One-line error when the corpus, tokenizer or config changed since the run started."""
    saved_path = run_dir / "inputs.json"
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise HmmLangError(
                f"{saved_path} is corrupt; the run cannot be checked, start a new run"
            )
        changed = [k for k in digests if k in saved and saved[k] != digests[k]]
        if changed:
            what = {"train_tokens": "training stories", "valid_tokens": "validation stories"}
            names = ", ".join(what.get(k, k) for k in changed)
            raise HmmLangError(
                f"cannot resume {run_dir}: its {names} changed since the run started (data "
                f"{cfg.data.data}); resume with the original data and tokenizer, or start a new run"
            )
    if ckpt is None:
        return
    old = load_checkpoint(ckpt).get("config")
    if isinstance(old, dict) and "dev_fraction" not in old.get("train", {}):
        raise HmmLangError(
            f"cannot resume {run_dir}: it predates the dev split (its sampler drew from every "
            "training story); start a new run"
        )
    if isinstance(old, dict):
        diffs = config_diff(old, cfg.to_dict())
        if diffs:
            raise HmmLangError(
                f"cannot resume {run_dir}: config.yaml was edited since {ckpt.name} "
                f"({'; '.join(diffs[:3])}); undo the edit, or start a new run with the new config"
            )


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every (dotted) key whose value differs between two config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += config_diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}: {x!r} -> {y!r}")
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    return ckpts[-1] if ckpts else None
