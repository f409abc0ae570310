# cl_runner: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)
# data root: CL_RUNNER_DATA when set, else ../shared/data when it exists, else ./data
export CL_RUNNER_DATA ?= $(if $(wildcard $(SHARED_DATA)/MNIST),$(SHARED_DATA),$(abspath data))
SEED ?= 1
# make sweep / make summarize: the demonstration grid and where it goes (a fixed folder, so
# running `make sweep` again resumes it: complete jobs are skipped)
SWEEP_DIR ?= outputs/multirun/demo
JOBS ?= 2
# make slurm-up / test-slurm: the script that starts a single-node SLURM cluster on this machine
SLURM_CI ?= ../shared/tools/slurm-ci.sh

.DEFAULT_GOAL := help
.PHONY: help setup run sweep summarize reproduce test test-all test-slurm slurm-up slurm-down lint bench clean

help: ## list the targets (in colour only on a terminal, and not with NO_COLOR set)
	@if [ -t 1 ] && [ -z "$$NO_COLOR" ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-10s%s %s\n", on, $$1, off, $$2}'

# the virtualenv with the package and its extras, made when missing and again when
# pyproject.toml changed since: every target that runs the code depends on this file, so
# `make run` and `make test` on a fresh clone install what they need first
INSTALLED := $(VENV)/.installed

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,slurm,loggers,hparams]'
	$(BIN)/python -c "import torch, torchvision, hydra; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| hydra', hydra.__version__)"
	touch $@

setup: ## (re)install: create .venv and install the package with its dev, slurm, loggers and hparams extras (torch 2.14.1 + torchvision 0.29.1); run, test... do it when needed
	rm -f $(INSTALLED)
	$(MAKE) --no-print-directory $(INSTALLED)

run: $(INSTALLED) ## the main job: MC-SGD on 20-task Rotated MNIST (SEED=1; extra overrides in ARGS="...")
	$(BIN)/cl-run strategy=mcsgd benchmark=rotated_mnist seed=$(SEED) $(ARGS)

sweep: $(INSTALLED) ## demo grid: naive,mcsgd x seeds 1,2 on 3-task Rotated MNIST (10k images/task), JOBS=2 parallel jobs, 1 thread each, into SWEEP_DIR
	$(BIN)/cl-run -m strategy=naive,mcsgd seed=1,2 benchmark=rotated_mnist benchmark.num_tasks=3 \
		benchmark.train_samples_per_task=10000 hardware.num_threads=1 progress=false \
		hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) hydra.sweep.dir=$(SWEEP_DIR) $(ARGS)

summarize: $(INSTALLED) ## tables and plots of SWEEP_DIR (or PATHS="dir1 dir2") into its summary/ folder (options in ARGS="format=latex ...")
	$(BIN)/cl-summarize $(or $(PATHS),$(SWEEP_DIR)) $(ARGS)

reproduce: $(INSTALLED) ## Table 1 on Rotated/Permuted MNIST: 7 methods x 2 benchmarks x 3 seeds (hours on 2 cores; JOBS parallel) -> docs/results/table1.md
	BIN=$(BIN) bash scripts/reproduce_table1.sh $(JOBS)

test: $(INSTALLED) ## the fast test suite (real MNIST subsets, CPU, no network)
	$(BIN)/python -m pytest -q --durations=15

test-all: $(INSTALLED) ## every test, including those marked slow (and slurm: skipped without a cluster)
	$(BIN)/python -m pytest -q -m ""

test-slurm: $(INSTALLED) ## sweeps on a real SLURM cluster on this machine (make slurm-up first; skipped, saying why, without one): ~4 min
	$(BIN)/python -m pytest -q -rs -m slurm --durations=10 tests/test_slurm.py

slurm-up: ## start a single-node SLURM cluster with accounting here (root, Debian 12: apt slurm-wlm 22.05, munge, slurmdbd)
	bash $(SLURM_CI) start

slurm-down: ## stop the daemons slurm-up started
	bash $(SLURM_CI) stop

lint: $(INSTALLED) ## ruff
	$(BIN)/ruff check cl_runner hydra_plugins tests scripts

bench: $(INSTALLED) ## speed figures: naive 20-task run vs a bare PyTorch loop, MC-SGD run, peak memory
	$(BIN)/python scripts/bench.py $(ARGS)

clean: ## remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache .ruff_cache $$(find . -name __pycache__ -not -path './.venv/*')
