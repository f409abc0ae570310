"""Defaults live once, in the schema dataclasses: no group YAML restates a schema default.

Every option file of the groups benchmark, model, strategy, optimizer, hardware and logger,
and the primary ``conf/config.yaml``, may set only what the option changes against its schema
(Hydra's structured-config pattern: the YAML extends the dataclass). Keys a file sets in
*another* group (a strategy's training regime: ``optimizer.lr``, ``benchmark.batch_size``,
``model.dropout``) are not compared: they hold whatever option of that group is chosen, so
they are the strategy's choice even where they equal one option's default. Experiment presets
(``conf/experiment``) are exempt: a preset spells out a paper's settings, so that it keeps
them when a default changes (docs/design.md, "Defaults in one place").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from cl_runner.config import CONF_DIR, REGISTRIES, LoggerConfig, RunConfig
from cl_runner.hardware_config import HardwareConfig

CONF = Path(CONF_DIR)
#: groups whose option files must state only what differs from their schema
GROUPS = ("benchmark", "model", "strategy", "optimizer", "hardware", "logger")
#: groups typed by a field of RunConfig (no schema/* entry in their defaults list)
RUN_LEVEL = {"hardware": HardwareConfig, "logger": LoggerConfig}
REGISTRY = {r.kind: r for r in REGISTRIES}


def schema_defaults(schema: type) -> dict[str, Any]:
    """The defaults of a config dataclass as plain data (enums as their names; groups a
    RunConfig leaves MISSING are left out)."""
    node = OmegaConf.structured(schema)
    plain = OmegaConf.to_container(node, resolve=False, enum_to_str=True,
                                   throw_on_missing=False)
    return {k: v for k, v in plain.items() if v != "???"}


def restated(values: Any, defaults: Any, prefix: str) -> list[str]:
    """Dotted keys of ``values`` whose value equals the default at the same place."""
    if isinstance(values, dict) and isinstance(defaults, dict):
        out: list[str] = []
        for key, value in values.items():
            if key in defaults:
                out += restated(value, defaults[key], f"{prefix}.{key}" if prefix else key)
        return out
    return [prefix] if values == defaults else []


def own_node(group: str, path: Path) -> tuple[dict[str, Any], type]:
    """What an option file of ``group`` sets in its own group, and the schema it extends."""
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    schema_name = None
    for item in data.pop("defaults", []) or []:
        if isinstance(item, dict):
            for key, value in item.items():
                if key.startswith(f"/schema/{group}@"):
                    schema_name = value
    if group in RUN_LEVEL:
        return data, RUN_LEVEL[group]
    assert schema_name is not None, f"{path} extends no /schema/{group}"
    schema = REGISTRY[group].get(schema_name).config
    if "@package _global_" in text.splitlines()[0]:
        return data.get(group) or {}, schema
    return data, schema


def group_files() -> list[tuple[str, Path]]:
    return [(g, p) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "path"), group_files(), ids=lambda x: getattr(x, "stem", x))
def test_no_group_yaml_restates_a_schema_default(group, path):
    values, schema = own_node(group, path)
    keys = restated(values, schema_defaults(schema), group)
    assert not keys, (f"{path.relative_to(CONF)} restates the defaults of {schema.__name__} at "
                      f"{', '.join(keys)}: the schema holds them; remove them from the YAML")


@pytest.mark.parametrize(("group", "path"),
                         [(g, p) for g, p in group_files() if g in REGISTRY],
                         ids=lambda x: getattr(x, "stem", x))
def test_an_option_named_after_its_schema_sets_nothing_in_its_own_group(group, path):
    """``conf/strategy/ewc.yaml`` is *the* EWC option: a value it set in ``strategy.*`` would
    be a second default that differs from the schema's (as ``coefficient_lr`` once was: None
    in the schema, 0.01 in the YAML), so it sets none."""
    values, schema = own_node(group, path)
    if REGISTRY[group].get(path.stem).config is schema:
        assert not values, f"{path.relative_to(CONF)} sets {sorted(values)}: put them in {schema.__name__}"


def test_primary_config_restates_no_run_default():
    data = yaml.safe_load((CONF / "config.yaml").read_text())
    values = {k: v for k, v in data.items() if k not in ("defaults", "hydra")}
    keys = restated(values, schema_defaults(RunConfig), "")
    assert not keys, f"conf/config.yaml restates RunConfig defaults at {', '.join(keys)}"


def test_the_check_finds_a_restated_value(tmp_path):
    """The walk above is not vacuous: a restated value in either layout is found, a changed
    one is not."""
    (tmp_path / "strategy").mkdir()
    (tmp_path / "benchmark").mkdir()
    glob_file = tmp_path / "strategy" / "ewc.yaml"
    glob_file.write_text("# @package _global_\ndefaults:\n  - /schema/strategy@strategy: ewc\n"
                         "  - _self_\nstrategy:\n  ewc_lambda: 10.0\n  mode: online\n"
                         "optimizer:\n  lr: 0.01\n")
    here = tmp_path / "benchmark" / "rotated_mnist.yaml"
    here.write_text("defaults:\n  - /schema/benchmark@_here_: rotated_mnist\n  - _self_\n"
                    "num_tasks: 20\nangle_step: 5.0\n")
    for group, path, expected in (("strategy", glob_file, ["strategy.ewc_lambda"]),
                                  ("benchmark", here, ["benchmark.num_tasks"])):
        values, schema = own_node(group, path)
        assert restated(values, schema_defaults(schema), group) == expected


def test_every_schema_field_has_a_default():
    """The schema alone gives a complete option: every field of every registered config has
    a default (so a YAML needs to state nothing)."""
    for registry in REGISTRIES:
        for entry in registry:
            for f in dataclasses.fields(entry.config):
                assert (f.default is not dataclasses.MISSING
                        or f.default_factory is not dataclasses.MISSING), (
                    f"{registry.kind} {entry.name}: {f.name} has no default")


# ---------------------------------------------------------------- every range check in validate()

#: one out-of-range value per strategy whose checks lived in its ``__init__`` (run after
#: ``summary.json`` said running and the data were loaded), and the message it gets
BAD_VALUES = [
    (["strategy=ewc", "strategy.ewc_lambda=-1"], "strategy.ewc_lambda must be >= 0, got -1"),
    (["strategy=ewc", "strategy.gamma_ewc=1.5"], r"strategy.gamma_ewc must be in \[0, 1\]"),
    (["strategy=er", "strategy.memory_size=0"], "strategy.memory_size must be >= 1, got 0"),
    (["strategy=agem", "strategy.memory_batch_size=0"], "strategy.memory_batch_size must be >= 1"),
    (["strategy=mcsgd", "strategy.lmc_lr=0"], "strategy.lmc_lr must be > 0, got 0"),
    (["strategy=mcsgd", "strategy.lmc_full_batch=true"], "needs strategy.line_gradient=authors"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_VALUES, ids=[o[1] for o, _ in BAD_VALUES])
def test_a_bad_strategy_value_is_refused_before_the_run_folder_is_touched(
        tmp_path, overrides, expected):
    """Through the Python API, as ``cl-run`` runs a job: the value is refused while the config
    is resolved, so no data are read (the data root does not exist), the run never starts
    (no ``summary.json`` saying running, no matrix, no table, no resume state) and the only
    file the folder may hold is the job's failure record."""
    from cl_runner import run as api_run
    from cl_runner.errors import ConfigError

    root, out = tmp_path / "no_such_root", tmp_path / "run"
    with pytest.raises(ConfigError, match=expected):
        api_run([*overrides, f"data.root={root}", "progress=false"], out_dir=out)
    assert not root.exists()
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []
    assert set(left) <= {"summary.json", ".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml",
                         ".hydra/overrides.yaml"}, left
    if "summary.json" in left:  # the failure record (cl_runner.job): never a started run
        summary = yaml.safe_load((out / "summary.json").read_text())
        assert summary["status"] == "failed" and "pid" not in summary and "config" not in summary


@pytest.mark.parametrize(("overrides", "expected"), BAD_VALUES, ids=[o[1] for o, _ in BAD_VALUES])
def test_a_bad_strategy_value_fails_in_its_schema_validate(overrides, expected):
    """The check is the schema's (``dispatch.resolve`` calls it before any folder exists)."""
    from cl_runner.errors import ConfigError
    from tests.conftest import compose_cfg

    cfg = compose_cfg(overrides)
    schema = REGISTRY["strategy"].get(cfg.strategy.name).config
    strategy = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), cfg.strategy))
    with pytest.raises(ConfigError, match=expected):
        strategy.validate()
