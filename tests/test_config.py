"""Every YAML composes and validates; typos, wrong types and unknown options are rejected
before any data is loaded, with a message naming the key or listing the valid options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException

from cl_runner.cli import CONF_DIR
from cl_runner.config import REGISTRIES
from cl_runner.data.mnist import RotatedMNISTConfig
from cl_runner.strategies.mcsgd import ContinualStart, MCSGDConfig
from tests.conftest import compose_cfg, compose_run, refused_scenario

CONF = Path(CONF_DIR)
GROUPS = ["benchmark", "model", "strategy", "optimizer", "hardware"]


def all_options():
    for group in GROUPS:
        for yaml in sorted((CONF / group).glob("*.yaml")):
            yield group, yaml.stem


@pytest.mark.parametrize(("group", "option"), list(all_options()))
def test_every_yaml_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if group == "strategy" and refused_scenario(option, compose_cfg(overrides)):
        overrides.append("benchmark=split_mnist")  # class-incremental methods (WA, BiC)
    run = compose_run(overrides)
    node = getattr(run, group)
    assert node.name == option
    registry = next((r for r in REGISTRIES if r.kind == group), None)
    if registry is not None:  # typed as the schema the component registered
        assert type(node) is registry.get(option).config


def test_every_registered_component_has_a_yaml():
    for registry in REGISTRIES:
        yamls = {p.stem for p in (CONF / registry.kind).glob("*.yaml")}
        assert set(registry.names()) <= yamls, registry.kind


def test_defaults_are_typed():
    run = compose_run([])
    assert isinstance(run.benchmark, RotatedMNISTConfig)
    assert run.benchmark.num_tasks == 20 and run.benchmark.angle_step == 9.0
    assert run.optimizer.lr == 0.01 and run.benchmark.batch_size == 10


def test_mcsgd_carries_its_regime_and_command_line_wins():
    run = compose_run(["strategy=mcsgd"])
    assert isinstance(run.strategy, MCSGDConfig)
    assert run.strategy.continual_start is ContinualStart.w_hat
    assert (run.optimizer.lr, run.optimizer.gamma, run.benchmark.batch_size, run.model.dropout) == (
        0.1, 0.8, 64, 0.2)
    run = compose_run(["strategy=mcsgd", "optimizer.lr=0.05", "benchmark.batch_size=32"])
    assert run.optimizer.lr == 0.05 and run.benchmark.batch_size == 32


def test_data_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CL_RUNNER_DATA", str(tmp_path))
    assert compose_run([]).data.root == str(tmp_path)
    monkeypatch.delenv("CL_RUNNER_DATA")
    assert compose_run([]).data.root == str(Path("data").resolve())


def _messages(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(("overrides", "expected"), [
    (["strategy=mcsgd", "strategy.lmc_lrr=0.1"], "lmc_lrr"),
    (["strategy.lmc_lrr=0.1"], "lmc_lrr"),
    (["seed=abc"], "seed"),
    (["strategy=mcsdg"], "mcsgd"),
    (["benchmark=rotated_mnist", "benchmark.angle_stepp=3"], "angle_stepp"),
    (["strategy=mcsgd", "strategy.continual_start=foo"], "w_bar"),
    (["hardware=gpu"], "cuda"),
    (["model.init=xavir"], "xavier"),  # the enum's options are listed
    (["strategy=icarl", "strategy.units=sen"], "seen"),
])
def test_bad_overrides_rejected_with_a_message_naming_the_problem(overrides, expected):
    with pytest.raises(HydraException) as info:
        compose_run(overrides)
    assert expected in _messages(info.value)


@pytest.mark.parametrize(("override", "expected"), [
    ("strategy=mcsdg", "Available options in 'strategy'"),
    # the same path through the console script (each a ~5 s subprocess); in-process above
    pytest.param("strategy.lmc_lrr=0.1", "Key 'lmc_lrr' not in", marks=pytest.mark.slow),
    pytest.param("seed=abc", "full_key: seed", marks=pytest.mark.slow),
])
def test_cli_rejects_bad_override_before_loading_data(tmp_path, override, expected):
    """Through the real console script, with a data root that does not exist: the config
    error must come first (no data loaded), without a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "cl_runner", override, f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, timeout=120,
        env={"CL_RUNNER_DATA": str(tmp_path / "missing"), "PATH": "/usr/bin:/bin"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in out
    assert "Traceback" not in out
    assert not (tmp_path / "missing").exists()
    if override == "strategy=mcsdg":
        assert "mcsgd" in out and "naive" in out
