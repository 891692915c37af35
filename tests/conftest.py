"""Shared fixtures: a small synthetic corpus and tokenizers trained on it once per session."""

from __future__ import annotations

import pytest

from hmm_lang.corpus import EOT, load_corpus
from hmm_lang.tokenizer import train_tokenizers

SMOKE_STORIES = 2500


@pytest.fixture(scope="session")
def corpus():
    return load_corpus("default", synthetic_stories=SMOKE_STORIES, seed=0)


@pytest.fixture(scope="session")
def tokenizers_dir(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("tokenizers")
    train_tokenizers(corpus.train, (1024, 2048, 4096), out)
    return out


def write_txt(path, stories):
    """Write stories in the official TinyStories .txt format."""
    path.write_text("".join(f"{s}\n{EOT}\n" for s in stories), encoding="utf-8")
    return path
