"""Every experiment preset (``conf/experiment/*.yaml``) composes with ``+experiment=NAME``,
validates, says how to run it and what the paper reports, and sets what it claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from cl_runner.cli import CONF_DIR
from cl_runner.config import RunConfig
from cl_runner.data.cifar import SplitCIFAR100Config
from tests.conftest import compose_run

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def test_there_are_presets():
    assert {"split_cifar100_naive", "split_cifar100_stable_sgd", "split_cifar100_mcsgd"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_validates(name):
    run = compose_run([f"+experiment={name}"])
    assert isinstance(run, RunConfig)
    # a command-line override still wins over the preset
    assert compose_run([f"+experiment={name}", "optimizer.lr=0.123", "seed=9"]).optimizer.lr == 0.123


@pytest.mark.parametrize("name", PRESETS)
def test_preset_header_gives_command_and_paper_number(name):
    lines = (Path(CONF_DIR) / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"
    header = []
    for line in lines[1:]:
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert f"cl-run +experiment={name}" in text
    assert "Paper:" in text
    # the MC-SGD baselines quote Table 1; presets of methods outside it say where their paper's
    # figures stand (docs/results/supermasks.md for the supermask methods)
    assert ("Table 1" in text and "%" in text) or "not checked" in text


def test_cifar_presets_set_the_papers_settings():
    naive = compose_run(["+experiment=split_cifar100_naive"])
    assert isinstance(naive.benchmark, SplitCIFAR100Config) and naive.model.name == "resnet18_reduced"
    assert (naive.strategy.name, naive.optimizer.lr, naive.optimizer.gamma,
            naive.benchmark.batch_size, naive.model.dropout) == ("naive", 0.01, 1.0, 10, 0.0)

    stable = compose_run(["+experiment=split_cifar100_stable_sgd"])
    assert (stable.strategy.name, stable.optimizer.lr, stable.optimizer.gamma,
            stable.benchmark.batch_size, stable.model.dropout) == ("naive", 0.1, 0.8, 10, 0.5)

    mc = compose_run(["+experiment=split_cifar100_mcsgd"])
    assert mc.strategy.name == "mcsgd" and mc.benchmark.num_tasks == 20
    assert (mc.optimizer.lr, mc.optimizer.gamma, mc.benchmark.batch_size, mc.model.dropout) == (
        0.1, 1.0, 64, 0.0)
    assert (mc.strategy.lmc_lr, mc.strategy.beta, mc.strategy.line_samples,
            mc.strategy.memory_per_class) == (0.005, 0.01, 5, 1)
