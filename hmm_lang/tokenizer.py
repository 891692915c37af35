"""Byte-level BPE tokenizers at several vocabulary sizes, trained once and reused.

Layout under ``out_dir`` (``tokenizers/`` by default), as in the original research notebook::

    custom_tokenizer_{V}/tokenizer.json     # the HF ``tokenizers`` model (+ vocab.json, merges.txt)
    custom_tokenizer_{V}/hmm_lang.json      # what it was trained on, to skip identical retraining
    HF_custom_tokenizer_{V}/                # ``PreTrainedTokenizerFast.save_pretrained``

>>> tok = load_tokenizer("tokenizers/HF_custom_tokenizer_4096")  # doctest: +SKIP
>>> token_pieces(tok, "Hello, world!")  # doctest: +SKIP
['Hello', ',', ' world', '!']
"""

from __future__ import annotations

import json
import logging
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from tqdm.auto import tqdm

from hmm_lang.atomic import atomic_dir, sweep_stale, write_json
from hmm_lang.corpus import StorySource
from hmm_lang.errors import HmmLangError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<s>", "</s>", "<pad>", "<unk>")
BOS, EOS, PAD, UNK = SPECIAL_TOKENS
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # the byte alphabet plus the special tokens
DEFAULT_VOCAB_SIZES = (1024, 2048, 4096)
META_FILE = "hmm_lang.json"


@dataclass(frozen=True)
class TokenizerSpec:
    """Everything that determines a trained tokenizer; equal specs give equal tokenizers."""

    vocab_size: int
    data_fingerprint: str
    min_frequency: int = 2
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    sample_stories: int | None = None  # trained on the first this many stories (None: all)


def custom_dir(out_dir: str | Path, vocab_size: int) -> Path:
    return Path(out_dir) / f"custom_tokenizer_{vocab_size}"


def hf_dir(out_dir: str | Path, vocab_size: int) -> Path:
    return Path(out_dir) / f"HF_custom_tokenizer_{vocab_size}"


def _read_spec(path: Path) -> TokenizerSpec | None:
    try:
        meta = json.loads((path / META_FILE).read_text())
        meta["special_tokens"] = tuple(meta["special_tokens"])
        # a field that an older metadata file lacks takes its default (a required one: KeyError)
        return TokenizerSpec(
            **{
                f.name: meta[f.name] if f.default is MISSING else meta.get(f.name, f.default)
                for f in fields(TokenizerSpec)
            }
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def check_vocab_size(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB:
        raise HmmLangError(
            f"vocab size {vocab_size} is below {MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} "
            "special tokens); choose a larger vocab size"
        )
    if vocab_size > 65536:
        raise HmmLangError(
            f"vocab size {vocab_size} exceeds 65536 (token ids are stored as uint16)"
        )


def train_tokenizer(
    source: StorySource,
    vocab_size: int,
    out_dir: str | Path = "tokenizers",
    min_frequency: int = 2,
    force: bool = False,
    sample_stories: int | None = None,
) -> Path:
    """Train a byte-level BPE tokenizer on ``source``; return its ``HF_custom_tokenizer_{V}`` dir.

    ``sample_stories`` trains on the first that many stories only (BPE merges settle long
    before 2M stories; the sample is recorded in the metadata as ``sample_stories`` and
    ``n_stories``). Skipped when a tokenizer with the same spec (data fingerprint and
    settings) exists, unless ``force``. Raises :class:`HmmLangError` when the corpus cannot
    support ``vocab_size``.
    """
    from transformers import PreTrainedTokenizerFast

    from hmm_lang.corpus import as_source
    from tokenizers import ByteLevelBPETokenizer

    source = as_source(source)
    check_vocab_size(vocab_size)
    if sample_stories is not None and sample_stories < 1:
        raise HmmLangError(f"sample_stories must be positive, got {sample_stories}")
    spec = TokenizerSpec(
        vocab_size, source.fingerprint(), min_frequency, sample_stories=sample_stories
    )
    cdir, hdir = custom_dir(out_dir, vocab_size), hf_dir(out_dir, vocab_size)
    if not force and _read_spec(cdir) == spec and _read_spec(hdir) == spec:
        log.info("reusing %s (same data and settings)", cdir)
        sweep_stale(cdir)  # leftovers of a writer killed mid-swap
        sweep_stale(hdir)
        return hdir

    tok = ByteLevelBPETokenizer()
    batches = tqdm(source.iter_batches(1000), desc=f"BPE {vocab_size}", unit="batch", leave=False)
    n_stories = 0

    def counted():
        nonlocal n_stories
        for batch in batches:
            if sample_stories is not None:
                batch = batch[: sample_stories - n_stories]
            n_stories += len(batch)
            yield batch
            if sample_stories is not None and n_stories >= sample_stories:
                return

    tok.train_from_iterator(
        counted(),
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    if n_stories == 0:
        raise HmmLangError(f"no stories in {source.name}; the corpus is empty")
    if tok.get_vocab_size() != vocab_size:
        raise HmmLangError(
            f"{source.name} ({n_stories} stories) supports only {tok.get_vocab_size()} tokens at "
            f"min_frequency={min_frequency}, fewer than vocab size {vocab_size}; use more stories "
            "or a smaller vocab size"
        )
    # Each folder is replaced atomically and holds the spec it was trained from; a pair is
    # reused only when both specs match, so a kill between the two replacements (new HF
    # folder beside old custom folder) retrains instead of mixing two tokenizers.
    meta = asdict(spec) | {"n_stories": n_stories, "source": source.name}
    with atomic_dir(hdir) as tmp:
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok._tokenizer,
            bos_token=BOS,
            eos_token=EOS,
            unk_token=UNK,
            pad_token=PAD,
        )
        hf.save_pretrained(str(tmp))
        write_json(tmp / META_FILE, meta)
    with atomic_dir(cdir) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        tok.save_model(str(tmp))
        write_json(tmp / META_FILE, meta)
    log.info("trained %s on %d stories", cdir, n_stories)
    return hdir


def train_tokenizers(
    source: StorySource,
    vocab_sizes=DEFAULT_VOCAB_SIZES,
    out_dir: str | Path = "tokenizers",
    force: bool = False,
    sample_stories: int | None = None,
) -> dict[int, Path]:
    """Train (or reuse) one tokenizer per vocab size; returns ``{V: HF dir}``. ``source`` is a
    :class:`StorySource`, a path (every story of the file) or a list of strings;
    ``sample_stories`` as in :func:`train_tokenizer`."""
    from hmm_lang.corpus import as_source

    source = as_source(source)
    for v in vocab_sizes:
        check_vocab_size(v)  # fail before any training, not after the first size
    # the largest first: a corpus too small for it fails before the smaller ones are written
    dirs = {
        v: train_tokenizer(source, v, out_dir, force=force, sample_stories=sample_stories)
        for v in sorted(vocab_sizes, reverse=True)
    }
    return {v: dirs[v] for v in vocab_sizes}


def resolve_tokenizer_dir(path: str | Path) -> Path:
    """Accept an ``HF_custom_tokenizer_{V}`` or ``custom_tokenizer_{V}`` folder (or a run folder
    holding ``tokenizer/``); return the HF folder."""
    p = Path(path)
    if (p / "tokenizer").is_dir():
        p = p / "tokenizer"
    if p.name.startswith("custom_tokenizer_"):
        sibling = p.parent / ("HF_" + p.name)
        if sibling.is_dir():
            p = sibling
    if not (p / "tokenizer.json").exists():
        raise HmmLangError(
            f"no tokenizer at {p} (tokenizer.json missing); train one with `hmm-lang tokenizers`"
        )
    return p


def load_tokenizer(path: str | Path):
    """The ``PreTrainedTokenizerFast`` saved at ``path`` (see :func:`resolve_tokenizer_dir`)."""
    from transformers import PreTrainedTokenizerFast

    p = resolve_tokenizer_dir(path)
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(p))
    except Exception as e:
        raise HmmLangError(
            f"cannot load the tokenizer at {p} ({e}); retrain it with --force"
        ) from None


def token_pieces(tokenizer, text: str) -> list[str]:
    """The text of each token of ``text``: ``"Hello, world!"`` -> ``['Hello', ',', ' world', '!']``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode([i]) for i in ids]
