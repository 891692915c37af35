# Two commands for a fresh machine: `make run` (the main job on the embedded corpus) and
# `make test` (lint, format check, test suite). Both create or reuse .venv by themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch is installed first so that nothing pulls a multi-GB CUDA build.
# On a machine with internet and no local wheel: make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= cpu
DATA ?= default

.PHONY: run test lint browser notebooks bench lab clean-venv

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

# The report test renders report.html in headless Chromium (Debian: chromium, chromium-driver).
# Installed here when possible (root with apt-get); elsewhere that one test skips, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "note: chromium could not be installed; the report rendering test will be skipped"; }

test: lint browser
	$(PY) -m pytest

# JupyterLab from the project's venv (the `lab` extra: jupyterlab, ipywidgets, kaleido)
lab: $(VENV)/.installed browser
	$(PY) -m pip install -q -e ".[lab]"
	$(VENV)/bin/jupyter lab notebooks/

notebooks: $(VENV)/.installed
	$(VENV)/bin/hmm-lang notebooks $(if $(RUN),--run $(RUN))

bench: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/bench_tokenize.py
	$(PY) benchmarks/bench_hmm.py
	$(PY) benchmarks/bench_train.py

clean-venv:
	rm -rf $(VENV)
