# Two commands a new user needs: `make run` (the dashboard) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium
# Where pip finds torch beside PyPI. PyPI's Linux wheel bundles CUDA; on a machine without an
# NVIDIA GPU the CPU build (a tenth of the size) comes from PyTorch's CPU index. Set
# TORCH_INDEX to your own mirror, or to an empty value for PyPI's default build.
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)

.PHONY: run test lint bench install chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --retries 1 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m app

# The browser tests drive Debian's Chromium: install it when missing and apt-get can (root).
# Without it they are skipped with a line saying so, except on CI (CI=true), where they fail.
chromium:
	@test -x $(CHROMIUM) || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "make: Chromium not installed: the browser tests will be skipped (CI=true fails them)"

test: install chromium
	$(PY) -m pytest

# ruff (lint and format) on every Python file, mypy --strict on the core and the app.
lint: install
	$(PY) -m ruff check eplb_core app tests benchmarks scripts
	$(PY) -m ruff format --check eplb_core app tests benchmarks scripts
	$(PY) -m mypy

# Speed and quality (README "Benchmarks"): the balancer against DeepSeek's and vLLM's, the
# advisor's sweeps, the policies' price in traffic, and the move budget's frontier.
bench: install
	$(PY) -m benchmarks.rebalance
	$(PY) -m benchmarks.advisor
	$(PY) -m benchmarks.policies --threads 1
	$(PY) -m benchmarks.migration
