# make demo: one full study cell on the tiny model and the bundled synthetic data (CPU, about a minute)
# make test: the test suite
# Both create .venv when it is missing and install torch first: the CPU build where there is no GPU.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.xorder-installed

export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint install grid tables clean

demo: $(STAMP)
	$(BIN)/xorder run experiment=demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --durations=15

# ruff (lint and format), mypy, and import-linter's layers: clean on the whole tree, run by CI before the tests
lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

install: $(STAMP)

# torch goes in before anything that depends on it, or pip pulls a multi-GB CUDA build onto CPU machines.
# With a GPU: the default build. Without: a CPU wheel that pip's --find-links already holds (then its
# dependencies from the index), else the CPU build from PyTorch's own index.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || { \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install -q torch; \
	  elif $(BIN)/python -m pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null; then \
	    $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"; \
	  else $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)" --index-url https://download.pytorch.org/whl/cpu; fi; }
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

grid: $(STAMP)
	$(BIN)/xorder run -m experiment=demo_grid

tables: $(STAMP)
	$(BIN)/python scripts/make_tables.py

clean:
	rm -rf $(VENV) .pytest_cache
