"""``load_run``: open a transformer run folder, the one way the CLI, notebooks and tests do it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hmm_lang.config import RunConfig, load_config
from hmm_lang.errors import HmmLangError
from hmm_lang.stats import token_counts  # noqa: F401 (re-exported for notebooks)
from hmm_lang.tokenizer import load_tokenizer

if TYPE_CHECKING:
    from hmm_lang.corpus import Corpus


@dataclass
class Run:
    path: Path
    config: RunConfig
    model: object  # HookedTransformerModel, in eval mode
    tokenizer: object  # PreTrainedTokenizerFast
    metrics: list[dict]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def valid_metrics(self) -> list[dict]:
        """The records of ``metrics`` that hold a validation score (the final one; runs made
        before the dev split have one per evaluation)."""
        return [m for m in self.metrics if "valid_bits_per_byte" in m]


log = logging.getLogger(__name__)


def find_run(path: str | Path | None = None, records_dir: str | Path = "records") -> Path:
    """``path`` if given, else the newest transformer run (one with final_model.pt)."""
    if path is not None:
        return Path(path)
    runs = sorted(p.parent for p in Path(records_dir).glob("*/final_model.pt"))
    if not runs:
        raise HmmLangError(f"no trained run under {records_dir}; train one with `hmm-lang train`")
    return runs[-1]


def load_run(
    path: str | Path | None = None, device: str | None = None, records_dir="records"
) -> Run:
    """The run's config, its trained model (final_model.pt, else the last checkpoint), its
    tokenizer and metrics."""
    from hmm_lang.transformer.checkpoints import latest_checkpoint, load_checkpoint
    from hmm_lang.transformer.model import HookedTransformerModel, check_checkpoint_vocab

    run_dir = find_run(path, records_dir)
    cfg = load_config(run_dir / "config.yaml")
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    check_checkpoint_vocab(cfg.model.d_vocab, len(tokenizer))
    model = HookedTransformerModel(cfg, device=device or "cpu")
    final = run_dir / "final_model.pt"
    if final.exists():
        try:
            state = torch.load(
                final, map_location=model.native.tok_embed.weight.device, weights_only=True
            )
        except Exception as e:
            raise HmmLangError(
                f"{final} is truncated or corrupt ({type(e).__name__}); retrain"
            ) from None
    elif (ckpt := latest_checkpoint(run_dir)) is not None:
        # an unfinished run (killed, or still training): say which weights are used
        log.warning("%s has no final_model.pt: using its checkpoint %s", run_dir, ckpt.name)
        state = load_checkpoint(ckpt)["model"]
    else:
        raise HmmLangError(f"{run_dir} has neither final_model.pt nor a checkpoint")
    model.load_state_dict(state)
    model.eval()
    metrics_path = run_dir / "metrics.jsonl"
    metrics = (
        [json.loads(x) for x in metrics_path.read_text().splitlines()]
        if metrics_path.exists()
        else []
    )
    return Run(run_dir, cfg, model, tokenizer, metrics)


__all__ = ["Run", "check_run_split", "config_streams", "find_run", "load_run", "run_streams"]


def resolve_data_path(path: str | None, run_dir: str | Path | None = None) -> str | None:
    """A run's data path, found from wherever the caller stands: as written if it exists (or
    is a name like ``default``), else relative to the folder the run was started from (its
    environment.json), else to the repository root. Notebooks run from ``notebooks/``."""
    if path is None or path in ("default", "tinystories") or Path(path).is_absolute():
        return path
    if Path(path).exists():
        return path
    bases = []
    if run_dir is not None:
        try:
            env = json.loads((Path(run_dir) / "environment.json").read_text())
            bases.append(Path(env["cwd"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    bases.append(Path(__file__).resolve().parents[1])
    for base in bases:
        if (base / path).exists():
            return str(base / path)
    return path


def config_streams(cfg: RunConfig, tokenizer_dir, run_dir=None):
    """Training and validation token streams of a config's corpus under ``tokenizer_dir``
    (relative data paths of a run are found with :func:`resolve_data_path`)."""
    from hmm_lang.corpus import load_corpus
    from hmm_lang.pretokenize import is_stream_folder, open_stream, pretokenize, split_stream

    d = cfg.data
    data = resolve_data_path(d.data, run_dir)
    if is_stream_folder(data):  # token streams (e.g. sampled from an HMM): no text, no BPE
        valid = resolve_data_path(d.valid, run_dir)
        if valid is not None and not is_stream_folder(valid):
            raise HmmLangError(
                f"data.data {data} is a token-stream folder but data.valid {valid} is not; give "
                "a stream folder (or no data.valid: a split of data.data)"
            )
        train = open_stream(data)
        if valid is None:
            train, val = split_stream(train, d.valid_fraction, d.split_seed)
        else:
            val = open_stream(valid)
        if d.max_stories is not None:  # capped as load_corpus caps text corpora
            train = train.head(d.max_stories)
            val = val.head(max(1, int(d.max_stories * d.valid_fraction)))
        return train, val
    corpus = load_corpus(
        resolve_data_path(d.data, run_dir),
        resolve_data_path(d.valid, run_dir),
        max_stories=d.max_stories,
        valid_fraction=d.valid_fraction,
        seed=d.split_seed,
    )
    return pretokenize(corpus.train, tokenizer_dir), pretokenize(corpus.valid, tokenizer_dir)


def run_streams(run: Run):
    """The run's training and validation token streams (its corpus, under its own tokenizer)."""
    return config_streams(run.config, run.path / "tokenizer", run.path)


def check_run_split(run_path: str | Path, corpus: Corpus) -> None:
    """One-line error unless the transformer run was trained on the ladder's split (same
    data fingerprint, split seed and fraction, hence the same validation stories)."""
    from hmm_lang.corpus import load_corpus
    from hmm_lang.pretokenize import is_stream_folder

    path = Path(run_path)
    if not (path / "config.yaml").exists():
        raise HmmLangError(f"{path} is not a transformer run folder (config.yaml missing)")
    d = load_config(path / "config.yaml").data
    if is_stream_folder(resolve_data_path(d.data, path)):
        raise HmmLangError(
            f"{path} was trained on a token-stream folder ({d.data}), not on this text corpus; "
            "compare it with its own data (e.g. `hmm-lang experiment beliefs --run`)"
        )
    try:
        theirs = load_corpus(
            resolve_data_path(d.data, path),
            resolve_data_path(d.valid, path),
            d.max_stories,
            d.valid_fraction,
            d.split_seed,
        )
        fp = theirs.split_fingerprint()
    except HmmLangError as e:
        raise HmmLangError(f"cannot open the corpus of run {path}: {e}") from None
    if fp != corpus.split_fingerprint():
        raise HmmLangError(
            f"run {path} was trained on another split (data {d.data}, valid_fraction "
            f"{d.valid_fraction}, split_seed {d.split_seed}, split {fp}) than the ladder's "
            f"({corpus.describe()}, split {corpus.split_fingerprint()}); train it on the ladder's "
            "--data/--valid-fraction/--seed"
        )
