"""Reading run folders: the metrics shown, one :class:`RunRecord` per folder, the finder."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cl_runner.results.metrics import METRICS, Metric  # noqa: F401  (Metric: re-exported)
from cl_runner.results.run_folder import (
    ACCURACY_MATRIX,
    HYDRA_DIR,
    RESUME_FILE,
    SUMMARY,
    SummaryUnreadable,
    load_summary,
    process_alive,
    read_accuracy_matrix,
)

#: the metrics cl-summarize knows are :data:`METRICS`, every declared one
#: (:mod:`cl_runner.results.metrics`: one :class:`Metric` declaration per metric)
#: the columns shown when none are asked for
DEFAULT_METRICS = tuple(m.name for m in METRICS.values() if m.default)
#: added to the default metrics when some run has them (continual evaluation on)
CONTINUAL_METRICS = tuple(m.name for m in METRICS.values() if m.source == "continual")


class SummarizeError(Exception):
    """A user error that stops the summary (a path that does not exist, an unknown option)."""


@dataclass
class RunRecord:
    """One run folder as read from disk.

    Attributes:
        path: the run folder.
        status: ``complete`` (aggregated), ``failed``, ``interrupted`` (stopped by SIGINT or
            SIGTERM, resumable), ``running`` (its process is alive on this host),
            ``incomplete`` (never finished: killed, crashed or never started), ``corrupt`` or
            ``duplicate`` (all but the first are listed, never aggregated).
        reason: why the run is not aggregated (None for complete runs).
        summary: the parsed ``summary.json`` (None when missing or unreadable).
        config: the resolved run config (from ``summary.json``, else ``.hydra/config.yaml``).
        overrides: the command-line overrides of the run (``.hydra/overrides.yaml``).
        matrix: the accuracy matrix, shape ``(T, T)``, fractions (complete runs only).
    """

    path: Path
    status: str
    reason: str | None = None
    summary: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)
    matrix: np.ndarray | None = None

    def get(self, name: str) -> Any:
        """A top-level field of the summary, else of the config (``seed``, ``strategy``...)."""
        for source in (self.summary, self.config):
            if isinstance(source, dict) and name in source:
                value = source[name]
                return value.get("name", value) if isinstance(value, dict) else value
        return None


def is_run_folder(path: Path) -> bool:
    """A folder a run wrote into: it holds ``summary.json`` or Hydra's ``.hydra/config.yaml``."""
    return (path / SUMMARY).is_file() or (path / HYDRA_DIR / "config.yaml").is_file()


def find_run_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Every run folder at or under ``paths``, sorted, without repeats.

    Raises:
        SummarizeError: a path does not exist or is not a folder.
    """
    found: set[Path] = set()
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.is_dir():
            raise SummarizeError(f"{root}: no such folder")
        stack = [root.resolve()]
        while stack:
            folder = stack.pop()
            if is_run_folder(folder):
                found.add(folder)
                continue  # a run folder holds no other runs
            try:
                children = sorted(p for p in folder.iterdir()
                                  if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            stack.extend(children)
    return sorted(found)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def as_number(value: Any) -> float:
    """``value`` as a float; None (JSON's NaN) -> NaN. Raises ValueError otherwise."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def metric_value(record: RunRecord, name: str) -> float:
    """Metric ``name`` of a complete run as a float (NaN when absent). ``task_cost_floats``
    of 0 in a ``summary.json`` without ``stores_per_task`` is NaN: written before episodic
    memories and strategy state were counted (2026-12-03), it may be wrong."""
    value = as_number(record.summary.get(name))
    if name == "task_cost_floats" and value == 0 and "stores_per_task" not in record.summary:
        return math.nan
    return value


def stores_per_task(record: RunRecord) -> bool | None:
    """Whether the run's strategy stored anything per task (None: not recorded)."""
    value = (record.summary or {}).get("stores_per_task")
    return value if isinstance(value, bool) else None


#: the task-inferred matrix of a supermask run (its headline where the task id is not given)
TASK_INFERRED_FILE = "accuracy_matrix_task_inferred.csv"


def relabel_task_given_headline(summary: dict[str, Any]) -> bool:
    """Relabel, in memory, the ``summary.json`` of a supermask run written before the scenario
    decided the headline (2026-12-06): on a benchmark that does not give the task id at test
    time its ``average_accuracy``, ``forgetting``... were task-given. A summary with
    ``task_inferred_average_accuracy`` and a scenario other than task-incremental is one
    (runs written since have the task-inferred accuracy as the headline and no
    ``task_inferred_*`` keys there). The task-given values move to ``task_il_*`` (the
    task-incremental matrix beside the headline), the task-inferred ones become the
    headline; ``forward_transfer`` was not measured with the task inferred: removed.
    The file on disk is never changed. Returns whether the summary was relabelled."""
    scenario = summary.get("scenario") or (
        (summary.get("config") or {}).get("benchmark", {}).get("scenario")) or "domain_incremental"
    scenario = {"task": "task_incremental"}.get(scenario, scenario)
    inferred = summary.get("task_inferred")
    if ("task_inferred_average_accuracy" not in summary or scenario == "task_incremental"
            or not isinstance(inferred, dict)):
        return False
    given = {k: summary.get(k) for k in ("average_accuracy", "forgetting", "backward_transfer",
                                         "learning_accuracy", "forward_transfer")}
    summary["task_il"] = given
    summary["task_il_average_accuracy"] = given["average_accuracy"]
    summary["task_il_forgetting"] = given["forgetting"]
    for key in ("average_accuracy", "forgetting", "backward_transfer", "learning_accuracy"):
        summary[key] = inferred.get(key)
    summary.pop("forward_transfer", None)
    for key in ("task_inferred", "task_inferred_average_accuracy", "task_inferred_forgetting"):
        summary.pop(key, None)
    summary["relabelled"] = ("written when the task-given accuracy was this run's headline; "
                             "read with the task-inferred one as the headline")
    return True


def read_inferred_matrix(path: Path, num_tasks: int | None) -> np.ndarray:
    """The task-inferred matrix of a run relabelled by :func:`relabel_task_given_headline`:
    as :func:`~cl_runner.results.run_folder.read_accuracy_matrix`, except that the cells
    above the diagonal (tasks not learned yet, not evaluated then) are NaN.

    Raises:
        ValueError: the file is missing or not such a table (names it).
    """
    try:
        values = pd.read_csv(path, index_col=0).to_numpy(dtype=np.float64)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a numeric accuracy table ({exc})") from exc
    if values.ndim != 2 or (num_tasks is not None and values.shape[1] != num_tasks):
        raise ValueError(f"{path}: expected {num_tasks} task columns, got shape {values.shape}")
    lower = values[np.tril_indices(min(values.shape))]
    if not np.all(np.isfinite(lower)) or lower.min() < 0 or lower.max() > 1:
        raise ValueError(f"{path}: accuracies of learned tasks must be fractions in [0, 1]")
    return values


def read_run(path: str | Path) -> RunRecord:
    """Read one run folder; never raises for bad or missing files (they set ``status``).

    The reason of a corrupt run names the file that could not be read and why.
    """
    path = Path(path)
    hydra_config = _read_yaml(path / HYDRA_DIR / "config.yaml")
    overrides = _read_yaml(path / HYDRA_DIR / "overrides.yaml")
    record = RunRecord(path=path, status="incomplete",
                       config=hydra_config if isinstance(hydra_config, dict) else None,
                       overrides=[str(o) for o in overrides] if isinstance(overrides, list) else [])
    summary_path = path / SUMMARY
    if not summary_path.is_file():
        record.reason = f"no {SUMMARY}: the job never started or was stopped before writing it"
        return record
    try:
        summary = load_summary(path)
    except (OSError, SummaryUnreadable) as exc:
        record.status, record.reason = "corrupt", str(exc)
        return record
    record.summary = summary
    if isinstance(summary.get("config"), dict):
        record.config = summary["config"]
    status = summary.get("status")
    matrix_path = path / ACCURACY_MATRIX
    if status == "failed":
        record.status = "failed"
        record.reason = str(summary.get("error") or "failed (no error message recorded)")
        return record
    if status in ("running", "interrupted"):
        done = ""
        if matrix_path.is_file():
            try:
                done = f"; {read_accuracy_matrix(matrix_path).shape[0]} of " \
                       f"{summary.get('num_tasks', '?')} tasks in {ACCURACY_MATRIX}"
            except ValueError:
                pass
        resumable = ("; the same command resumes it" if (path / RESUME_FILE).is_file()
                     else "")
        if status == "interrupted":
            record.status = "interrupted"
            record.reason = f"{summary.get('error') or 'interrupted'}{done}{resumable}"
        elif process_alive(summary.get("pid"), summary.get("host"), summary.get("pid_start")):
            record.status = "running"
            record.reason = (f"still running in process {summary['pid']} on "
                             f"{summary['host']}{done}")
        elif "pid" in summary:
            record.reason = (f"status 'running' but process {summary['pid']} on "
                             f"{summary.get('host')} is gone (killed or crashed){done}{resumable}")
        else:
            record.reason = f"status 'running': interrupted, or still running{done}"
        return record
    if status != "complete":
        record.status, record.reason = "corrupt", f"{summary_path}: unknown status {status!r}"
        return record
    record.status = "corrupt"
    for name in ("average_accuracy", "seed"):
        if name not in summary:
            record.reason = f"{summary_path}: '{name}' missing"
            return record
    for name in METRICS:
        try:
            as_number(summary.get(name))
        except ValueError as exc:
            record.reason = f"{summary_path}: '{name}': {exc}"
            return record
    if record.config is None:
        record.reason = f"{summary_path}: no 'config' and no readable .hydra/config.yaml"
        return record
    num_tasks = summary.get("num_tasks")
    try:
        if relabel_task_given_headline(summary):
            matrix = read_inferred_matrix(path / TASK_INFERRED_FILE,
                                          num_tasks if isinstance(num_tasks, int) else None)
        else:
            matrix = read_accuracy_matrix(matrix_path,
                                          num_tasks if isinstance(num_tasks, int) else None)
    except ValueError as exc:
        record.reason = str(exc)
        return record
    if matrix.shape[0] != matrix.shape[1]:
        record.reason = (f"{matrix_path}: {matrix.shape[0]} rows for {matrix.shape[1]} tasks, "
                         "though summary.json says complete")
        return record
    record.status, record.reason, record.matrix = "complete", None, matrix
    return record
