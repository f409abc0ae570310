"""The run folder: the names of the files a run leaves, their writer and readers, and the rule
that decides whether a run may start in a folder.

A run folder holds the files of :data:`RESULT_FILES` (the one manifest of what a run writes:
``summary.json``, ``accuracy_matrix.csv``, ``metrics.csv``, ``resume.pt`` while unfinished,
curves, tables, checkpoints, logger files) and those of :data:`KEPT_FILES` (``.hydra/``, logs).

Nothing is replaced silently (:func:`check_run_folder`): a folder holding a complete result of
another resolved config, or the folder of a run still going on in a live process, is refused
with :class:`RunFolderError`; ``force=true`` replaces a complete result on purpose.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_runner.errors import ConfigError
from cl_runner.results.processes import (  # noqa: F401  (re-exported: the run folder's API)
    _proc_stat,
    process_alive,
    process_record,
)
from cl_runner.results.writer import atomic_write_json

#: the checkpoint folder (results/checkpoints.py FOLDER; named here so this module needs no torch)
CHECKPOINTS = "checkpoints"

SUMMARY = "summary.json"
ACCURACY_MATRIX = "accuracy_matrix.csv"
METRICS = "metrics.csv"
RESUME_FILE = "resume.pt"
DIAGNOSTICS = "diagnostics.csv"
HYDRA_DIR = ".hydra"
CONTINUAL_EVAL = "continual_eval.csv"
#: class-incremental benchmarks: the headline's confusion counts at every task end
CONFUSION = "confusion.csv"
OBJECTIVE = "objective.json"
TENSORBOARD = "tensorboard"
WANDB_RUN_ID = "wandb_run_id.txt"
#: the benchmarks' own tables (``Benchmark.artifacts``)
BENCHMARK_TABLES = ("angles.csv", "permutations.csv", "classes.csv")

#: THE manifest of what a run writes into its folder: (name or glob pattern, what it is).
#: Every entry is the run's result, removed by :func:`clear_results` before a ``force=true``
#: or ``resume=false`` run starts, so no stale file (a curve, a W&B run id) outlives its run.
#: Writers take their file names from here; tests/test_data_safety.py checks that a run with
#: every option on writes nothing outside :data:`RESULT_FILES` and :data:`KEPT_FILES`.
RESULT_FILES: tuple[tuple[str, str], ...] = (
    (SUMMARY, "status, metrics, config, attempts"),
    (ACCURACY_MATRIX, "the accuracy matrix, rewritten after every task"),
    (METRICS, "the tidy metrics"),
    ("accuracy_matrix_*.csv", "the matrices beside the headline: task_il (task-incremental), "
                              "task_inferred and task_inference (supermask strategies)"),
    (CONFUSION, "the confusion counts at every task end (class-incremental benchmarks)"),
    (RESUME_FILE, "the resume state of an unfinished run"),
    (DIAGNOSTICS, "probes (probes=[...])"),
    (CONTINUAL_EVAL, "continual evaluation (eval.every_steps)"),
    *((name, "a benchmark's table") for name in BENCHMARK_TABLES),
    (OBJECTIVE, "the per-seed values of a mean-over-seeds objective"),
    (CHECKPOINTS, "end-of-task weights (checkpoints.enabled), a folder"),
    (TENSORBOARD, "logger=tensorboard's event files, a folder"),
    (WANDB_RUN_ID, "logger=wandb's run id: a resumed run continues that W&B run, a new one "
                   "starts a new W&B run"),
)
#: what a run leaves that :func:`clear_results` keeps: Hydra's record (rewritten by the new
#: run), the logs, the folder's lock, W&B's local files (possibly not yet synced)
KEPT_FILES = (HYDRA_DIR, "*.log", ".lock", "wandb")

#: top-level config keys that do not change a run's numbers: the progress bar, the skip and
#: resume switches, where the data live and whether they may be downloaded, the logger, what
#: is returned to a sweeper.
NON_RESULT_KEYS = ("progress", "force", "resume", "data", "logger", "objective")

#: the function that fills in the keys a stored config lacks from the defaults of its schemas
#: (set by :func:`use_schema_defaults`; none: configs compare as they are)
_fill_defaults: list[Callable[[dict[str, Any]], dict[str, Any]]] = []


def use_schema_defaults(fill: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Make :func:`comparable_config` fill a config's missing keys with ``fill(config)``.

    The schemas that hold the defaults live above this layer, so the runner layer installs
    its filler here (:func:`cl_runner.config.fill_schema_defaults`, when ``cl_runner.config``
    is imported, as every entry point that checks a run folder does). A key added to a schema
    after results were stored then compares at its default: a ``summary.json`` or resume
    state written before the key existed still matches a config that has it at that value
    (so a new key must default to what runs without it did)."""
    _fill_defaults[:] = [fill]


class RunFolderError(ConfigError):
    """A run may not start in this folder: it holds a complete result of another config, or
    a run still going on in a live process. Nothing in the folder was changed."""


class SummaryUnreadable(ValueError):
    """``summary.json`` exists but cannot be used; the message names the file and why."""


def extra_matrix_file(name: str) -> str:
    """The file of the matrix ``name`` beside the headline: ``accuracy_matrix_<name>.csv``
    (``task_il``: the task-incremental matrix)."""
    return f"accuracy_matrix_{name}.csv"


# --------------------------------------------------------------------------- configs

def _plain(value: Any) -> Any:
    """JSON's view of ``value`` (tuples -> lists, NaN/inf -> None, keys -> str)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def comparable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved run config that determines its results.

    Args:
        config: the resolved config as plain data (``experiment.config_dict(run)``, or the
            ``config`` entry of a ``summary.json``).

    Returns:
        ``config`` without :data:`NON_RESULT_KEYS`, normalized as JSON stores it, so a config
        read back from ``summary.json`` compares equal to the one it was written from; keys
        missing from it take their schema defaults (:func:`use_schema_defaults`).
    """
    plain = _plain(config)
    for fill in _fill_defaults:
        plain = _plain(fill(plain))
    return {k: v for k, v in plain.items() if k not in NON_RESULT_KEYS}


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths at which two plain config trees (dicts, lists, values) differ; a key
    present in only one of them counts. ``[]`` when equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out += differing_keys(a[key], b[key], path)
        return out
    return [] if a == b else [prefix or "(root)"]


# --------------------------------------------------------------------------- reading, writing

def write_summary(out_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write ``out_dir/summary.json`` atomically (NaN -> null); returns its path."""
    return atomic_write_json(Path(out_dir) / SUMMARY, dict(summary))


def load_summary(out_dir: str | Path) -> dict[str, Any]:
    """``out_dir/summary.json`` as a dict.

    Raises:
        FileNotFoundError: there is no ``summary.json``.
        SummaryUnreadable: it cannot be read, is not JSON or not a JSON object (the message
            names the file and the cause).
    """
    path = Path(out_dir) / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SummaryUnreadable(f"{path}: unreadable ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise SummaryUnreadable(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SummaryUnreadable(f"{path}: not a JSON object")
    return data


def read_summary(out_dir: str | Path) -> dict[str, Any] | None:
    """``out_dir/summary.json`` as a dict, or None when it is missing, unreadable or not a
    JSON object (never raises for a bad file)."""
    try:
        return load_summary(out_dir)
    except (OSError, SummaryUnreadable):
        return None


def read_accuracy_matrix(path: str | Path, num_tasks: int | None = None) -> np.ndarray:
    """Read ``accuracy_matrix.csv`` (index ``after_task_i``, columns ``task_j``, fractions).

    Returns:
        Array of shape ``(rows, T)``; ``rows == T`` for a finished run. An empty cell above
        the diagonal (a task not trained yet that was not evaluated, ``eval.future_tasks``)
        is NaN.

    Raises:
        ValueError: the file is not a numeric table of accuracies in [0, 1] (empty cells only
            above the diagonal), or its number of columns differs from ``num_tasks``; the
            message names the file.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, index_col=0)
        values = frame.to_numpy(dtype=np.float64)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a numeric accuracy table ({exc})") from exc
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{path}: empty accuracy table")
    if num_tasks is not None and values.shape[1] != num_tasks:
        raise ValueError(f"{path}: {values.shape[1]} task columns, expected {num_tasks}")
    future = np.triu(np.ones(values.shape, dtype=bool), k=1)  # row i, task j > i
    known = values[~(future & np.isnan(values))]
    if not np.all(np.isfinite(known)) or known.min() < 0 or known.max() > 1:
        raise ValueError(f"{path}: accuracies must be finite fractions in [0, 1] (empty only "
                         f"for a task not trained yet)")
    return values


def holds_complete_result(out_dir: str | Path, summary: Mapping[str, Any] | None = None) -> bool:
    """Whether ``out_dir`` holds a finished result: ``summary.json`` says ``status: complete``
    and ``accuracy_matrix.csv`` exists (``summary``: the folder's summary, if read already)."""
    summary = read_summary(out_dir) if summary is None else summary
    return (summary is not None and summary.get("status") == "complete"
            and (Path(out_dir) / ACCURACY_MATRIX).is_file())


def result_problem(out_dir: str | Path, summary: Mapping[str, Any]) -> str | None:
    """Why the complete result ``summary`` says ``out_dir`` holds cannot be trusted, or None:
    ``accuracy_matrix.csv`` missing, unreadable or not ``T x T`` for the ``num_tasks`` of the
    summary and of its config, or ``average_accuracy`` missing."""
    path = Path(out_dir) / ACCURACY_MATRIX
    num_tasks = summary.get("num_tasks")
    config = summary.get("config")
    benchmark = config.get("benchmark") if isinstance(config, Mapping) else None
    configured = (benchmark.get("num_tasks", num_tasks) if isinstance(benchmark, Mapping)
                  else num_tasks)
    if not isinstance(num_tasks, int) or num_tasks != configured:
        return f"summary.json says {num_tasks!r} tasks, its config {configured!r}"
    if not isinstance(summary.get("average_accuracy"), int | float):
        return "summary.json has no average_accuracy"
    if not path.is_file():
        return f"{ACCURACY_MATRIX} is missing"
    try:
        rows = read_accuracy_matrix(path, num_tasks).shape[0]
    except ValueError as exc:
        return str(exc)
    if rows != num_tasks:
        return f"{ACCURACY_MATRIX} has {rows} rows for {num_tasks} tasks"
    return None


def complete_result(out_dir: str | Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The finished result already in ``out_dir`` for this config, if there is one.

    Args:
        out_dir: the run folder.
        config: the run's resolved config as plain data (``experiment.config_dict(run)``).

    Returns:
        The ``summary.json`` dict when :func:`holds_complete_result` and its ``config`` equals
        ``config`` up to :data:`NON_RESULT_KEYS`; else None (no result, a failed or
        interrupted one, or one from another config).
    """
    summary = read_summary(out_dir)
    if not holds_complete_result(out_dir, summary):
        return None
    stored = summary.get("config")
    if not isinstance(stored, Mapping):
        return None
    if result_problem(out_dir, summary) is not None:
        return None
    return summary if comparable_config(stored) == comparable_config(config) else None


def replaced_by_force(out_dir: str | Path) -> bool:
    """Whether ``force=true`` clears ``out_dir`` (:func:`clear_results`) before its run: its
    ``summary.json`` says ``complete`` (sound or damaged) or cannot be read."""
    summary = read_summary(out_dir)
    if summary is None:
        return (Path(out_dir) / SUMMARY).exists()
    return summary.get("status") == "complete"


# --------------------------------------------------------------------------- may a run start?

def check_run_folder(out_dir: str | Path, config: Mapping[str, Any],
                     force: bool = False) -> dict[str, Any] | None:
    """Decide whether a run of ``config`` may start in ``out_dir``, before anything is written.

    Args:
        out_dir: the run folder (it may not exist yet).
        config: the run's resolved config as plain data (``experiment.config_dict(run)``).
        force: replace a complete result (of this or another config) on purpose.

    Returns:
        The folder's summary when it holds a complete result of the same config and not
        ``force`` (the caller skips the run); else None: the run may start (an empty folder,
        a failed, interrupted or crashed run, which resumes from its ``resume.pt``, or, with
        ``force``, a complete result, whose files :func:`clear_results` then removes).

    Raises:
        RunFolderError: the folder holds a complete result of another config (the message
            names the folder and the differing keys, dotted), a damaged one
            (:func:`result_problem`) or a ``summary.json`` that cannot be read, and not
            ``force``; or its
            summary says ``running`` and the recorded process is alive on this host (whatever
            ``force``). Nothing is changed in the folder.
    """
    try:
        summary = load_summary(out_dir)
    except FileNotFoundError:
        return None
    except SummaryUnreadable as exc:  # not an empty folder: a record that cannot be read
        if force:
            return None
        raise RunFolderError(f"{exc}: the folder's record cannot be read, so it may hold a "
                             f"result; choose another run folder, or force=true to replace "
                             f"it") from None
    status = summary.get("status")
    if status == "running" and process_alive(summary.get("pid"), summary.get("host"),
                                             summary.get("pid_start")):
        raise RunFolderError(
            f"{out_dir} is in use: its run is still going on in process {summary['pid']} on "
            f"{summary['host']}; wait for it, stop it, or choose another run folder")
    if status == "complete" and not force:
        problem = result_problem(out_dir, summary)
        if problem is not None:
            raise RunFolderError(f"{out_dir} holds a damaged result ({problem}); choose another "
                                 f"run folder, or force=true to replace it")
    if not holds_complete_result(out_dir, summary):
        return None
    stored = summary.get("config")
    keys = (differing_keys(comparable_config(stored), comparable_config(config))
            if isinstance(stored, Mapping) else ["(no config recorded)"])
    if force:
        return None
    if not keys:
        return summary
    shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    raise RunFolderError(
        f"{out_dir} holds a complete result of another config (differs at: {shown}); "
        f"choose another run folder, or force=true to replace it")


def clear_results(out_dir: str | Path) -> list[Path]:
    """Remove every file and folder of :data:`RESULT_FILES` from ``out_dir``, before a
    ``force=true`` run replaces a result or a ``resume=false`` run starts over;
    :data:`KEPT_FILES` stay. Returns what was removed."""
    out_dir = Path(out_dir)
    removed = sorted({path for pattern, _ in RESULT_FILES for path in out_dir.glob(pattern)})
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed
