"""From the composed config to typed components: the only place below the CLI that touches
OmegaConf (docs/design.md, principle 2)."""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from cl_runner.config import REGISTRIES, RunConfig
from cl_runner.data.schemas import BENCHMARKS
from cl_runner.errors import ConfigError
from cl_runner.hardware_config import Device, HardwareConfig
from cl_runner.models.schemas import MODELS
from cl_runner.strategies.schemas import STRATEGIES
from cl_runner.training.schemas import OPTIMIZERS

if TYPE_CHECKING:  # torch is imported when a run starts (setup_hardware), not by resolve()
    import torch

    from cl_runner.data.benchmark import Benchmark
    from cl_runner.strategies.base import Strategy


def resolve(cfg: DictConfig) -> RunConfig:
    """Turn the composed config into a typed :class:`RunConfig` (nested dataclasses).

    Raises:
        ConfigError: a key no schema knows (:func:`check_known_keys`: added with ``+``), a
            group holds a component name that is not registered, a group node
            has no schema (a YAML that does not extend ``/schema/<group>``), a value is out of
            range (the group config's ``validate()``, e.g. ``benchmark.train_samples_per_task``
            above the dataset's known size; no file is read), or the model does
            not fit the benchmark (:func:`check_model_fits_benchmark`) or the strategy
            (:func:`check_model_fits_strategy`), or the strategy refuses the benchmark's scenario
            (:func:`check_strategy_fits_scenario`: supermask strategies on class-incremental).
    """
    check_known_keys(cfg)
    run: RunConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    for registry in REGISTRIES:
        node = getattr(run, registry.kind)
        if not hasattr(node, "name") or isinstance(node, dict):
            raise ConfigError(f"config group '{registry.kind}' has no schema; its YAML must list "
                              f"'/schema/{registry.kind}@...' in its defaults")
        if node.name not in registry:
            raise ConfigError(f"{registry.kind}.name={node.name!r} is not registered; valid "
                              f"options: {', '.join(registry.names())}")
    run.hardware.validate()
    for registry in REGISTRIES:  # value checks that need no data, before any file is read
        node = getattr(run, registry.kind)
        if hasattr(node, "validate"):
            node.validate()
    check_model_fits_benchmark(run)
    check_model_fits_strategy(run)
    check_strategy_fits_scenario(run)
    run.data.root = str(Path(os.path.expanduser(run.data.root)).resolve())
    return run


def unknown_keys(node: DictConfig, prefix: str = "") -> list[tuple[str, list[str]]]:
    """The keys of ``node`` and its sub-nodes that their schema dataclass does not declare,
    each with the keys it does declare at that level: ``[("strategy.lmc_lrr", ["name",
    "lmc_lr", ...])]``. Hydra refuses such keys unless they are added with ``+`` (which opens
    the node), and the dataclass then never sees them: ``OmegaConf.to_object`` drops them.
    Nodes without a dataclass schema (plain dicts) may hold any key."""
    out: list[tuple[str, list[str]]] = []
    schema = OmegaConf.get_type(node)
    known = ([f.name for f in dataclasses.fields(schema)]
             if isinstance(schema, type) and dataclasses.is_dataclass(schema) else None)
    for key in node.keys():
        path = f"{prefix}{key}"
        if known is not None and key not in known:
            out.append((path, known))
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            out += unknown_keys(child, f"{path}.")
    return out


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse a config holding a key that no schema declares (``cl-run strategy=mcsgd
    +strategy.lmc_lrr=0.1``, ``run(["+foo=1"])``), naming the closest declared key
    (``difflib``). Adding a config group with ``+`` (``+experiment=NAME``) adds no key.

    Raises:
        ConfigError: naming each unknown key, and the closest known one where there is one.
    """
    problems = []
    for path, known in unknown_keys(cfg):
        parent, _, name = path.rpartition(".")
        close = difflib.get_close_matches(name, known, n=1)
        hint = (f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close
                else "")
        problems.append(f"{path}{hint}")
    if problems:
        raise ConfigError(f"unknown config key{'s' if len(problems) > 1 else ''}: "
                          f"{'; '.join(problems)}. No schema declares "
                          f"{'them, so they' if len(problems) > 1 else 'it, so it'} would be ignored; "
                          f"`cl-run --help` and `cl-run --cfg job` list the keys")


def check_model_fits_benchmark(run: RunConfig) -> None:
    """Refuse, before any data is loaded, a model the benchmark does not support.

    A benchmark config class may list ``supported_models`` (a ClassVar; e.g. Split CIFAR-100:
    ``("resnet18_reduced",)``); benchmarks without the list accept every model.

    Raises:
        ConfigError: naming the model, the benchmark and the models that fit.
    """
    supported = getattr(type(run.benchmark), "supported_models", None)
    if supported is not None and run.model.name not in supported:
        raise ConfigError(
            f"model={run.model.name} does not fit benchmark={run.benchmark.name}; supported: "
            f"{', '.join(f'model={m}' for m in supported)} (the benchmark's default, used when "
            f"no model is given)."
        )


def check_model_fits_strategy(run: RunConfig) -> None:
    """Refuse a strategy that needs a supermask model (its config class has the ClassVar
    ``needs_supermask_model``: supsup, impresslearn) with a model that is not one (model config
    class without ``is_supermask``).

    Raises:
        ConfigError: naming the strategy, the model and the supermask models.
    """
    if getattr(type(run.strategy), "needs_supermask_model", False) and not getattr(
            type(run.model), "is_supermask", False):
        masked = [e.name for e in MODELS if getattr(e.config, "is_supermask", False)]
        raise ConfigError(
            f"strategy={run.strategy.name} needs a supermask model (fixed random weights, "
            f"learned masks), got model={run.model.name}; use "
            f"{' or '.join(f'model={m}' for m in masked)}."
        )


def check_strategy_fits_scenario(run: RunConfig) -> None:
    """Refuse a strategy in a scenario its config class lists in the ClassVar
    ``unsupported_scenarios`` (scenario value -> reason; the supermask strategies refuse
    ``class_incremental``), or whose config's ``scenario_problem(scenario)`` names a reason
    (a value that does not fit the scenario). A benchmark config without ``scenario`` is
    domain-incremental (Rotated/Permuted MNIST).

    Raises:
        ConfigError: naming the strategy, the benchmark, its scenario, the reason and the
            scenarios to use instead.
    """
    refused = getattr(type(run.strategy), "unsupported_scenarios", {})
    scenario = getattr(run.benchmark, "scenario", None)
    value = "domain_incremental" if scenario is None else getattr(scenario, "value", scenario)
    if value in refused:
        fits = [s for s in ("task", "class", "domain") if f"{s}_incremental" not in refused]
        raise ConfigError(
            f"strategy={run.strategy.name} does not run on benchmark={run.benchmark.name} "
            f"with benchmark.scenario={value}: {refused[value]}. Use a split benchmark "
            f"(e.g. benchmark=split_mnist) with "
            f"{' or '.join(f'benchmark.scenario={s}' for s in fits)}.")
    problem = getattr(run.strategy, "scenario_problem", None)
    reason = problem(value) if problem is not None else None
    if reason is not None:
        raise ConfigError(f"strategy={run.strategy.name} on benchmark={run.benchmark.name} "
                          f"({value}): {reason}")


def setup_hardware(cfg: HardwareConfig) -> torch.device:
    """Apply thread count and determinism; return the device to run on.

    Raises:
        ConfigError: ``device=cuda`` on a machine without CUDA, or ``num_threads < 1``.
    """
    import torch

    if cfg.device == Device.cuda and not torch.cuda.is_available():
        raise ConfigError("hardware.device=cuda but CUDA is not available here; use hardware=cpu or auto")
    device = torch.device("cuda" if cfg.device != Device.cpu and torch.cuda.is_available() else "cpu")
    if cfg.num_threads is not None:
        if cfg.num_threads < 1:
            raise ConfigError(f"hardware.num_threads must be >= 1, got {cfg.num_threads}")
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return device


def build_benchmark(run: RunConfig, device: torch.device) -> Benchmark:
    """The benchmark named by ``run.benchmark.name``, its tensors on ``device``; with
    ``benchmark.validation_fraction > 0`` wrapped in a
    :class:`~cl_runner.data.validation.ValidationSplit` (evaluation on held-out training data)."""
    benchmark = BENCHMARKS.build(run.benchmark, data_root=run.data.root,
                                 download=run.data.download, seed=run.seed, device=device)
    fraction = getattr(run.benchmark, "validation_fraction", 0.0)
    if fraction > 0:
        from cl_runner.data.validation import ValidationSplit

        benchmark = ValidationSplit(benchmark, fraction, run.seed)
    return benchmark


def build_model(run: RunConfig, benchmark: Benchmark, device: torch.device) -> torch.nn.Module:
    """The model named by ``run.model.name``, sized for ``benchmark``, on ``device``.

    Raises:
        ConfigError: superfluous output neurons (``model.output_size``) on a benchmark that
            masks the outputs per task (Split CIFAR-100), which they would not fit.
    """
    model = MODELS.build(run.model, input_shape=benchmark.input_shape,
                         num_classes=benchmark.num_classes)
    if getattr(model, "real_outputs", None) is not None and \
            benchmark.class_masks("train") is not None:
        raise ConfigError(f"model.output_size does not work with benchmark={benchmark.name} "
                          f"(its tasks mask the outputs to their classes); leave it null")
    return model.to(device)


def build_strategy(run: RunConfig) -> Strategy:
    """The strategy named by ``run.strategy.name``.

    Raises:
        ConfigError: the strategy refuses ``hardware.precision``
            (:meth:`~cl_runner.strategies.base.Strategy.precision_problem`) or
            ``hardware.compile`` (its ``compile_problem``).
    """
    strategy = STRATEGIES.build(run.strategy)
    problem = strategy.precision_problem(run.hardware.precision)
    if problem is not None:
        raise ConfigError(f"hardware.precision={run.hardware.precision}: strategy="
                          f"{run.strategy.name} refuses it: {problem}")
    mode = run.hardware.compile
    if mode not in (False, "false") and strategy.compile_problem is not None:
        raise ConfigError(f"hardware.compile={mode}: strategy={run.strategy.name} refuses it: "
                          f"{strategy.compile_problem}; use hardware.compile=false")
    return strategy


def optimizer_factory(run: RunConfig):
    """``(params, task) -> optimizer`` for the optimizer named by ``run.optimizer.name``."""
    cfg = run.optimizer
    if hasattr(cfg, "validate"):
        cfg.validate()
    return lambda params, task: OPTIMIZERS.build(cfg, params=params, task=task)
