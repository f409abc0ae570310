"""Sweep bookkeeping for ``cl-run``: skip jobs already done, record jobs that failed.

Sweeps run through Hydra's own launchers (``hydra/launcher=basic|joblib|submitit_slurm``);
every job gets its own sweep sub-folder. Two rules make a sweep restartable:

- A job whose folder already holds a ``summary.json`` with ``status: complete`` and the same
  resolved config (:func:`comparable_config`) is skipped, so running an interrupted sweep's
  command again (with the same ``hydra.sweep.dir``) runs only what is missing. ``force=true``
  re-runs every job.
- A job that raises leaves ``status: failed`` and the error in its ``summary.json``
  (:func:`record_failure`), and the exception goes back to Hydra, which marks the job failed,
  runs the other jobs, and reports the first failure when the sweep ends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cl_runner.results.writer import atomic_write_json

SUMMARY = "summary.json"

#: top-level config keys that do not change a run's numbers: the progress bar, the skip and
#: resume switches, where the data live and whether they may be downloaded.
NON_RESULT_KEYS = ("progress", "force", "resume", "data")

#: keys added to the run config after results were first stored, with the value a config
#: written before them means (their default): a stored config without them compares equal to
#: one that has them at that value, so adding them did not invalidate finished runs.
ADDED_KEY_DEFAULTS: dict[str, Any] = {
    "checkpoints": {"enabled": False, "tasks": None},
    "probes": [],
    "probe": {"gradient_conflict": {"examples_per_task": 256, "chunk_size": 1024,
                                    "at": ["task_start", "task_end"]}},
}


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
        missing from it take their :data:`ADDED_KEY_DEFAULTS`.
    """
    plain = {**ADDED_KEY_DEFAULTS, **_plain(config)}
    return {k: v for k, v in plain.items() if k not in NON_RESULT_KEYS}


def read_summary(out_dir: str | Path) -> dict[str, Any] | None:
    """``out_dir/summary.json`` as a dict, or None when it is missing, unreadable or not a
    JSON object (never raises for a bad file: the caller then simply runs the job)."""
    try:
        data = json.loads((Path(out_dir) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def complete_result(out_dir: str | Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The finished result already in ``out_dir`` for this config, if there is one.

    Args:
        out_dir: the job's run folder.
        config: the job's resolved config as plain data (``experiment.config_dict(run)``).

    Returns:
        The ``summary.json`` dict when it says ``status: complete``, ``accuracy_matrix.csv``
        exists, and its ``config`` equals ``config`` up to :data:`NON_RESULT_KEYS`;
        else None (no result, a failed or interrupted one, or one from another config).
    """
    summary = read_summary(out_dir)
    if summary is None or summary.get("status") != "complete":
        return None
    if not (Path(out_dir) / "accuracy_matrix.csv").is_file():
        return None
    stored = summary.get("config")
    if not isinstance(stored, Mapping):
        return None
    return summary if comparable_config(stored) == comparable_config(config) else None


def error_text(exc: BaseException) -> str:
    """``"TypeName: message"``, the form ``summary.json`` stores errors in."""
    return f"{type(exc).__name__}: {exc}"


def record_failure(out_dir: str | Path, exc: BaseException,
                   context: Mapping[str, Any] | None = None) -> Path:
    """Make sure ``out_dir/summary.json`` records this job as failed with ``exc``.

    ``run_experiment`` already writes ``status: failed`` for errors raised while it runs;
    this covers errors raised before it starts (an invalid value found while resolving the
    config) and replaces any older summary left in the folder by an earlier launch.

    Args:
        out_dir: the job's run folder (created if missing).
        exc: the exception the job raised.
        context: extra fields for a newly written summary (``strategy``, ``benchmark``,
            ``seed``...), so the summarizer can name the failed run.

    Returns:
        The path of ``summary.json``.
    """
    path = Path(out_dir) / SUMMARY
    error = error_text(exc)
    summary = read_summary(out_dir)
    if summary is not None and summary.get("status") == "failed" and summary.get("error") == error:
        return path
    record: dict[str, Any] = dict(context or {})
    record.update(status="failed", error=error,
                  failed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return atomic_write_json(path, record)
