# cl_runner: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)
# data root: CL_RUNNER_DATA when set, else ../shared/data when it exists, else ./data
export CL_RUNNER_DATA ?= $(if $(wildcard $(SHARED_DATA)/MNIST),$(SHARED_DATA),$(abspath data))
SEED ?= 1

.DEFAULT_GOAL := help
.PHONY: help setup run test test-all lint bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

setup: ## create .venv and install the package with its dev extras (torch 2.14.1 + torchvision 0.29.1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import torch, torchvision, hydra; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| hydra', hydra.__version__)"

run: ## the main job: MC-SGD on 20-task Rotated MNIST (SEED=1; extra overrides in ARGS="...")
	$(BIN)/cl-run strategy=mcsgd benchmark=rotated_mnist seed=$(SEED) $(ARGS)

test: ## the fast test suite (real MNIST subsets, CPU, no network)
	$(BIN)/python -m pytest -q

test-all: ## every test, including those marked slow
	$(BIN)/python -m pytest -q -m ""

lint: ## ruff
	$(BIN)/ruff check cl_runner tests scripts

bench: ## speed figures: naive 20-task run vs a bare PyTorch loop, MC-SGD run, peak memory
	$(BIN)/python scripts/bench.py $(ARGS)

clean: ## remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache .ruff_cache $$(find . -name __pycache__ -not -path './.venv/*')
