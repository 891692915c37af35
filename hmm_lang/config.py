"""One typed config tree for transformer runs, read from YAML and written as ``config.yaml``.

Unknown keys and wrong types are rejected with the key named. Numbers are parsed deliberately:
PyYAML reads ``3e-4`` as the string "3e-4", which a float field accepts here.

>>> cfg = load_config_dict({"model": {"n_layers": 2}, "train": {"lr": "3e-4"}})
>>> cfg.train.lr
0.0003
>>> apply_overrides(cfg, ["train.steps=5", "d_model=64"]).model.d_model
64
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hmm_lang.errors import HmmLangError

# what TransformerLens 4's native model accepts (transformer_lens SUPPORTED_ACTIVATIONS)
ACT_FNS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu", "relu2", "silu", "solu")
NORMALIZATIONS = ("LN", "LNPre", "RMS", "RMSPre", "None")


def check_device(device: str, what: str, auto: bool = False) -> None:
    """One-line errors for an unknown device name or one this machine does not have."""
    names = ("auto", "cpu", "cuda", "mps") if auto else ("cpu", "cuda", "mps")
    if device not in names and not device.startswith("cuda:"):
        raise HmmLangError(f"unknown {what} {device!r}; choose {', '.join(names)} or cuda:N")
    fallback = "auto or cpu" if auto else "cpu"
    if device.startswith("cuda") or device == "mps":
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise HmmLangError(f"{what} is cuda but no CUDA device is available; use {fallback}")
        if device == "mps" and not torch.backends.mps.is_available():
            raise HmmLangError(f"{what} is mps but MPS is not available; use {fallback}")


def auto_cuda(device: str) -> str:
    """``auto``: CUDA where there is one, else the CPU (where dense EM runs); other names as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class ModelConfig:
    """Architecture of the TransformerLens-native transformer."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 256
    act_fn: str = "gelu"
    normalization: str = "LN"  # LN, LNPre, RMS, RMSPre or None
    d_vocab: int | None = None  # filled in from the tokenizer when the run starts
    seed: int = 0  # weight initialisation


@dataclass
class TrainConfig:
    lr: float = 1e-3
    min_lr: float = 1e-4  # the cosine decays to this
    warmup_steps: int = 50
    batch_tokens: int = 8192  # global batch: sequences of n_ctx tokens, summed over processes
    steps: int = 1000
    max_tokens: int | None = None  # if set, steps = max_tokens // batch_tokens
    grad_clip: float = 1.0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eval_interval: int = 100
    eval_stories: int | None = 500  # dev stories scored at each eval (None: all)
    # the evals score a dev split carved from the training stories (hmm_lang.devsplit); the
    # best eval's weights are the final model, and validation is scored once, at the end
    dev_fraction: float = 0.05
    dev_seed: int = 0  # as fit-hmm's --dev-seed: the same dev stories as the HMMs' by default
    patience: int | None = 3  # stop after this many evals gaining < tol on the best (None: never)
    tol: float = 1e-3  # dev nats/token
    checkpoint_interval: int = 200
    seed: int = 0  # data order
    device: str = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
    autocast_bf16: bool = True  # on CUDA only
    compile: bool = False
    log_interval: int = 10
    check_memory: bool = True  # refuse a batch whose activations exceed the free RAM

    @property
    def total_steps(self) -> int:
        return self.max_tokens // self.batch_tokens if self.max_tokens else self.steps


@dataclass
class DataConfig:
    data: str = "default"
    valid: str | None = None
    tokenizer: str = "tokenizers/HF_custom_tokenizer_4096"
    max_stories: int | None = None
    valid_fraction: float = 0.1
    split_seed: int = 0


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> RunConfig:
        """One-line errors for values that would fail (or silently mislead) later."""
        import math

        m, t, d = self.model, self.train, self.data
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx"):
            if getattr(m, name) < 1:
                raise HmmLangError(f"model.{name} must be at least 1, got {getattr(m, name)}")
        if m.n_ctx < 2:
            raise HmmLangError(f"model.n_ctx must be at least 2, got {m.n_ctx}")
        if m.act_fn not in ACT_FNS:
            raise HmmLangError(f"unknown model.act_fn {m.act_fn!r}; choose {', '.join(ACT_FNS)}")
        if m.normalization not in NORMALIZATIONS:
            raise HmmLangError(
                f"unknown model.normalization {m.normalization!r}; choose "
                f"{', '.join(NORMALIZATIONS)}"
            )
        for name in ("steps", "batch_tokens", "eval_interval", "checkpoint_interval"):
            if getattr(t, name) < 1:
                raise HmmLangError(f"train.{name} must be at least 1, got {getattr(t, name)}")
        if t.log_interval < 1 or t.warmup_steps < 0:
            raise HmmLangError("train.log_interval must be >= 1 and train.warmup_steps >= 0")
        for name in ("lr", "grad_clip"):
            v = getattr(t, name)
            if not (math.isfinite(v) and v > 0):
                raise HmmLangError(f"train.{name} must be a positive number, got {v}")
        if not (math.isfinite(t.min_lr) and 0 <= t.min_lr <= t.lr):
            raise HmmLangError(f"train.min_lr must be in [0, train.lr], got {t.min_lr}")
        if not (math.isfinite(t.weight_decay) and t.weight_decay >= 0):
            raise HmmLangError(f"train.weight_decay must be >= 0, got {t.weight_decay}")
        if not (0 <= t.beta1 < 1 and 0 <= t.beta2 < 1):
            raise HmmLangError("train.beta1 and train.beta2 must be in [0, 1)")
        if t.max_tokens is not None and t.max_tokens < t.batch_tokens:
            raise HmmLangError("train.max_tokens must be at least train.batch_tokens")
        if t.eval_stories is not None and t.eval_stories < 1:
            raise HmmLangError("train.eval_stories must be at least 1 (or null for all)")
        if not 0.0 < t.dev_fraction < 1.0:
            raise HmmLangError(f"train.dev_fraction must be in (0, 1), got {t.dev_fraction}")
        if t.patience is not None and t.patience < 1:
            raise HmmLangError("train.patience must be at least 1 (or null: run every step)")
        if not (math.isfinite(t.tol) and t.tol >= 0):
            raise HmmLangError(f"train.tol must be >= 0, got {t.tol}")
        check_device(t.device, "train.device", auto=True)
        if not 0.0 < d.valid_fraction < 1.0:
            raise HmmLangError(f"data.valid_fraction must be in (0, 1), got {d.valid_fraction}")
        if d.max_stories is not None and d.max_stories < 2:
            raise HmmLangError("data.max_stories must be at least 2 (one for validation)")
        return self


def _convert(value, tp, key: str):
    """``value`` as type ``tp`` (int, float, str, bool, or an Optional of them)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _convert(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                f = float(value)
                if f == int(f):
                    return int(f)
            except ValueError:
                pass
        if isinstance(value, float) and value == int(value):
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise HmmLangError(f"config key {key!r}: expected {tp.__name__}, got {value!r}")


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise HmmLangError(f"config section {prefix or 'top level'!r} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in known:
            raise HmmLangError(
                f"unknown config key {path!r}; known keys: {', '.join(sorted(known))}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, path + ".")
        else:
            kwargs[key] = _convert(value, tp, path)
    return cls(**kwargs)


def load_config_dict(data: dict | None) -> RunConfig:
    return _build(RunConfig, data or {}, "")


CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, else a name in the repository's ``configs/`` (``tiny``)."""
    p = Path(path)
    if p.exists():
        return p
    for candidate in (CONFIGS_DIR / p, CONFIGS_DIR / f"{p}.yaml"):
        if candidate.exists():
            return candidate
    raise HmmLangError(f"config file {p} does not exist (nor {CONFIGS_DIR / p.name})")


def load_config(path: str | Path) -> RunConfig:
    """The :class:`RunConfig` of a YAML file (or a name in ``configs/``, e.g. ``tiny``)."""
    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise HmmLangError(f"config file {p} is not valid YAML ({e.__class__.__name__})") from None
    return load_config_dict(data)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` (or an unambiguous bare ``key=value``); returns a new config."""
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise HmmLangError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        if "." in key:
            section, name = key.split(".", 1)
        else:
            sections = [s for s, d in data.items() if key in d]
            if len(sections) != 1:
                where = "no section" if not sections else f"sections {sections}"
                raise HmmLangError(f"override key {key!r} matches {where}; write section.{key}")
            section, name = sections[0], key
        if section not in data or name not in data[section]:
            raise HmmLangError(f"unknown config key {key!r} in override {item!r}")
        data[section][name] = yaml.safe_load(value) if value else None
    return load_config_dict(data)
