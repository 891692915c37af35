# Two commands for a fresh machine: `make run` (the main job on the embedded corpus) and
# `make test` (lint, format check, test suite). Both create or reuse .venv by themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch is installed first so that nothing pulls a multi-GB CUDA build.
# On a machine with internet and no local wheel: make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= cpu
DATA ?= default

.PHONY: run test lint notebooks bench clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/hmm-lang run --data $(DATA) --profile $(PROFILE)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_tokenize.py

clean-venv:
	rm -rf $(VENV)
