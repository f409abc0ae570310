"""Run folders with checkpoints, as ``cl-analyze`` reads them: the saved solutions under
qualified names, and the benchmark and model rebuilt from the runs' saved config."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import nn

from cl_runner.data import BENCHMARKS, Benchmark
from cl_runner.errors import CLRunnerError
from cl_runner.models import MODELS
from cl_runner.results.checkpoints import INIT, load_state, read_index
from cl_runner.results.run_folder import read_summary

#: benchmark keys that set the training regime, not the tasks' data (may differ between runs)
REGIME_KEYS = ("batch_size", "eval_batch_size", "epochs_per_task", "max_steps_per_task")
#: model keys that do not change the architecture (dropout has no weights; eval mode skips it)
NON_ARCHITECTURE_KEYS = ("dropout",)


class AnalysisError(CLRunnerError):
    """Bad input to ``cl-analyze``: runs that do not fit together, an unknown solution name,
    a run without checkpoints, an invalid option."""


@dataclass
class RunFolder:
    """One run folder with checkpoints.

    Attributes:
        path: the folder.
        label: short name used in qualified solution names (``label/w_hat_3``).
        config: the run's resolved config (``summary.json``'s ``config``), plain data.
        index: the checkpoint index (:func:`cl_runner.results.checkpoints.read_index`).
    """

    path: Path
    label: str
    config: dict[str, Any]
    index: pd.DataFrame
    key_map: dict[str, str] | None = None
    _states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def strategy(self) -> str:
        return self.config["strategy"]["name"]

    def names(self) -> list[str]:
        """Saved solutions: ``init`` first, then by kind and task."""
        frame = self.index.sort_values(["task", "kind"], kind="stable")
        return list(frame["name"])

    def tasks(self, kind: str) -> list[int]:
        """Tasks with a saved solution of ``kind`` (``w_hat``, ``w_bar``, ``w_star``)."""
        return sorted(int(t) for t in self.index.loc[self.index["kind"] == kind, "task"])

    def state(self, name: str) -> dict[str, torch.Tensor]:
        """The saved ``state_dict`` ``name`` (loaded once, kept), its keys renamed to the
        analysis model's by ``key_map`` when set (:func:`build_components`)."""
        if name not in self._states:
            state = load_state(self.path, name)
            if self.key_map is not None:
                state = {self.key_map[k]: v for k, v in state.items() if k in self.key_map}
            self._states[name] = state
        return self._states[name]


def read_run_folder(path: str | Path, label: str | None = None) -> RunFolder:
    """Read a run folder written with ``checkpoints.enabled=true``.

    Raises:
        AnalysisError: not a run folder, no saved config, or no checkpoints.
    """
    path = Path(path)
    summary = read_summary(path)
    if summary is None or not isinstance(summary.get("config"), dict):
        raise AnalysisError(f"{path}: no readable summary.json with the run's config (is it a "
                            f"folder written by cl-run?)")
    try:
        index = read_index(path)
    except FileNotFoundError as exc:
        raise AnalysisError(str(exc)) from None
    config = summary["config"]
    return RunFolder(path, label or config["strategy"]["name"], config, index)


def _without(d: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


class Solutions:
    """The saved solutions of runs of one benchmark, model architecture and seed.

    A solution is named ``label/name``: ``mcsgd/w_hat_3``, ``multitask/w_star_5``,
    ``naive/init``. A bare name (``w_star_5``) is accepted when exactly one run has it.

    Args:
        runs: the runs, labels unique.

    Raises:
        AnalysisError: the runs differ in benchmark (apart from :data:`REGIME_KEYS`), seed or
            model architecture, or two runs share a label.
    """

    def __init__(self, runs: Sequence[RunFolder]) -> None:
        if not runs:
            raise AnalysisError("no run folder given")
        self.runs = list(runs)
        labels = [r.label for r in self.runs]
        if len(set(labels)) != len(labels) or any("/" in lab for lab in labels):
            raise AnalysisError(f"run labels must be unique and without '/': {labels}")
        first = self.runs[0]
        for run in self.runs[1:]:
            for what, a, b in (
                ("benchmark", _without(first.config["benchmark"], REGIME_KEYS),
                 _without(run.config["benchmark"], REGIME_KEYS)),
                ("seed", first.config["seed"], run.config["seed"]),
                ("model", _without(first.config["model"], NON_ARCHITECTURE_KEYS),
                 _without(run.config["model"], NON_ARCHITECTURE_KEYS)),
            ):
                if a != b:
                    raise AnalysisError(f"runs {first.path} and {run.path} differ in {what} "
                                        f"({a} vs {b}); analyze runs of one benchmark and seed")
        self.problems: list[str] = []

    @property
    def config(self) -> dict[str, Any]:
        """The first run's config (benchmark, model and seed are shared by all runs)."""
        return self.runs[0].config

    def by_label(self, label: str) -> RunFolder:
        """The run labelled ``label``.

        Raises:
            AnalysisError: no such run (the message lists the labels).
        """
        for run in self.runs:
            if run.label == label:
                return run
        raise AnalysisError(f"no run labelled {label!r}; runs: "
                            f"{', '.join(r.label for r in self.runs)}")

    def with_kind(self, kind: str) -> list[RunFolder]:
        """The runs that saved solutions of ``kind``, in the order given."""
        return [r for r in self.runs if r.tasks(kind)]

    def resolve(self, ref: str) -> tuple[RunFolder, str]:
        """``"label/name"`` or a bare unique ``"name"`` -> (run, name).

        Raises:
            AnalysisError: unknown run or solution, or a bare name several runs have.
        """
        if "/" in ref:
            label, name = ref.split("/", 1)
            run = self.by_label(label)
            if name not in run.names():
                raise AnalysisError(f"run {label!r} has no solution {name!r}; it has: "
                                    f"{', '.join(run.names())}")
            return run, name
        owners = [r for r in self.runs if ref in r.names()]
        if len(owners) != 1:
            where = ("no run has it" if not owners
                     else f"runs {', '.join(r.label for r in owners)} have it")
            raise AnalysisError(f"solution {ref!r}: {where}; write it as LABEL/{ref}")
        return owners[0], ref

    def qualified(self, ref: str) -> str:
        """The qualified name ``label/name`` of ``ref``."""
        run, name = self.resolve(ref)
        return f"{run.label}/{name}"

    def state(self, ref: str) -> dict[str, torch.Tensor]:
        """The ``state_dict`` of solution ``ref`` (CPU tensors)."""
        run, name = self.resolve(ref)
        return run.state(name)

    def all_names(self) -> list[str]:
        """Every saved solution, qualified, run by run; the shared ``init`` once, first, when
        all runs' initializations are equal (each run's own otherwise)."""
        names = []
        shared = self.shared_init()
        if shared:
            names.append(f"{self.runs[0].label}/{INIT}")
        for run in self.runs:
            names += [f"{run.label}/{n}" for n in run.names() if not (shared and n == INIT)]
        return names

    @cached_property
    def _inits_equal(self) -> bool:
        first = self.runs[0].state(INIT)
        return all(
            run.state(INIT).keys() == first.keys()
            and all(torch.equal(run.state(INIT)[k], first[k]) for k in first)
            for run in self.runs[1:]
        )

    def shared_init(self) -> bool:
        """True when every run saved the same initialization (the premise of the paper's
        analyses: solutions reached from one start); otherwise a problem is recorded."""
        if not all(INIT in r.names() for r in self.runs):
            return False
        if not self._inits_equal:
            msg = "the runs' initializations (checkpoints/init.pt) differ"
            if msg not in self.problems:
                self.problems.append(msg)
            return False
        return True


def load_solutions(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> Solutions:
    """Read run folders (labels default to the strategy names, made unique with ``-2``...).

    Raises:
        AnalysisError: see :func:`read_run_folder` and :class:`Solutions`; ``labels`` of the
            wrong length.
    """
    if labels is not None and len(labels) != len(paths):
        raise AnalysisError(f"labels has {len(labels)} entries for {len(paths)} run folders")
    runs, seen = [], {}
    for k, path in enumerate(paths):
        run = read_run_folder(path, None if labels is None else labels[k])
        if labels is None:
            seen[run.label] = seen.get(run.label, 0) + 1
            if seen[run.label] > 1:
                run.label = f"{run.label}-{seen[run.label]}"
        runs.append(run)
    return Solutions(runs)


def _typed(registry, node: dict[str, Any]) -> Any:
    schema = registry.get(node["name"]).config
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


def build_components(solutions: Solutions, device: torch.device | str = "cpu",
                     data_root: str | None = None) -> tuple[Benchmark, nn.Module]:
    """The benchmark and (untrained) model of the runs, rebuilt from their saved config, so
    analyses evaluate on exactly the runs' task data (same seed, same transforms).

    Args:
        data_root: datasets folder; default ``CL_RUNNER_DATA``, else the runs' ``data.root``.

    Raises:
        DatasetNotFoundError: the data are not under the root (never downloads).
    """
    cfg = solutions.config
    root = data_root or os.environ.get("CL_RUNNER_DATA") or cfg["data"]["root"]
    benchmark = BENCHMARKS.build(_typed(BENCHMARKS, cfg["benchmark"]), data_root=root,
                                 download=False, seed=cfg["seed"], device=torch.device(device))
    def make(run_cfg: dict[str, Any]) -> nn.Module:
        return MODELS.build(_typed(MODELS, run_cfg["model"]), input_shape=benchmark.input_shape,
                            num_classes=benchmark.num_classes)

    model = make(cfg)
    for run in solutions.runs:
        run.key_map = matching_keys(make(run.config), model, run.path)
        run._states.clear()
    return benchmark, model.to(device).eval()


def matching_keys(own: nn.Module, target: nn.Module, where: Path) -> dict[str, str]:
    """Map a run's ``state_dict`` keys to the analysis model's, position by position among
    parameters and among buffers (models that differ only in weight-free layers, e.g. an MLP
    with and without dropout, number their layers differently).

    Raises:
        AnalysisError: the parameters or buffers differ in number or shape.
    """
    mapping = {}
    for kind, a, b in (("parameters", list(own.named_parameters()),
                        list(target.named_parameters())),
                       ("buffers", list(own.named_buffers()), list(target.named_buffers()))):
        shapes_a, shapes_b = [tuple(t.shape) for _, t in a], [tuple(t.shape) for _, t in b]
        if shapes_a != shapes_b:
            raise AnalysisError(f"{where}: the model's {kind} do not match the first run's "
                                f"({len(a)} vs {len(b)} tensors); analyze runs of one model")
        mapping.update({na: nb for (na, _), (nb, _) in zip(a, b, strict=True)})
    return mapping
