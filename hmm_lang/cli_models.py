"""``hmm-lang`` subcommands for models: n-grams and HMMs."""

from __future__ import annotations

REGISTER: list = []
