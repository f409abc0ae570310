"""Sweep bookkeeping for ``cl-run``: record jobs that failed.

Sweeps run through Hydra's own launchers (``hydra/launcher=basic|joblib|submitit_slurm``);
every job gets its own sweep sub-folder, named after the job's overrides
(``hydra.job.override_dirname``, ``conf/config.yaml``). Three rules make a sweep restartable
and keep every result (:func:`cl_runner.results.run_folder.check_run_folder`):

- A job whose folder already holds a complete result of the same resolved config is skipped,
  so running an interrupted sweep's command again (with the same ``hydra.sweep.dir``) runs
  only what is missing; a job interrupted or killed resumes from its last finished task.
- A job whose folder holds a complete result of another config, or a run still going on in a
  live process, fails with a message naming the folder (and the differing keys) and leaves the
  folder as it was; ``force=true`` replaces complete results.
- A job that raises leaves ``status: failed`` and the error in its ``summary.json``
  (:func:`record_failure`), and the exception goes back to Hydra, which marks the job failed,
  runs the other jobs, and reports the first failure when the sweep ends.

A joblib (loky) worker whose ``cl-run -m`` was killed (``kill -9``) finishes the job it is
running and then exits (:func:`leave_when_orphaned`) instead of hanging on for ever.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cl_runner.results.run_folder import (
    SUMMARY,
    holds_complete_result,
    read_summary,
    write_summary,
)


def error_text(exc: BaseException) -> str:
    """``"TypeName: message"``, the form ``summary.json`` stores errors in."""
    return f"{type(exc).__name__}: {exc}"


def record_failure(out_dir: str | Path, exc: BaseException,
                   context: Mapping[str, Any] | None = None) -> Path | None:
    """Make sure ``out_dir/summary.json`` records this job as failed with ``exc``.

    ``run_experiment`` already writes ``status: failed`` for errors raised while it runs;
    this covers errors raised before it starts (an invalid value found while resolving the
    config) and replaces an older failed, interrupted or unfinished summary left in the folder
    by an earlier launch. A complete result is never replaced (the error is only reported).

    Args:
        out_dir: the job's run folder (created if missing).
        exc: the exception the job raised.
        context: extra fields for a newly written summary (``strategy``, ``benchmark``,
            ``seed``...), so the summarizer can name the failed run.

    Returns:
        The path of ``summary.json``, or None when the folder holds a complete result (left
        as it was).
    """
    path = Path(out_dir) / SUMMARY
    error = error_text(exc)
    summary = read_summary(out_dir)
    if holds_complete_result(out_dir, summary):
        return None
    if summary is not None and summary.get("status") == "failed" and summary.get("error") == error:
        return path
    record: dict[str, Any] = dict(context or {})
    record.update(status="failed", error=error,
                  failed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return write_summary(out_dir, record)


_jobs = {"running": 0, "parent": None}
_jobs_lock = threading.Lock()


def _exit_when_orphaned(poll_s: float) -> None:
    """Watcher thread of a loky worker: ``os._exit(0)`` once the process that started the
    worker is gone and no job is running here (every file of the last job is written)."""
    while True:
        time.sleep(poll_s)
        with _jobs_lock:
            if _jobs["running"] == 0 and os.getppid() != _jobs["parent"]:
                os._exit(0)


@contextmanager
def leave_when_orphaned(poll_s: float = 1.0) -> Iterator[None]:
    """Run one job so that a joblib (loky) worker process leaves once its sweep is gone.

    Killed with ``kill -9``, ``cl-run -m ... hydra/launcher=joblib`` leaves its loky workers
    behind (re-parented to init); each finishes its job, then blocks for ever writing the
    result into a pipe nobody reads (measured: still there after 6 minutes, about 0.8-0.9 GB
    each on full MNIST; loky's 300 s idle timeout never fires). In a loky worker this starts
    (once) a daemon thread that checks every ``poll_s`` seconds whether the worker's parent
    has changed and, when no job is running, ends the process with ``os._exit(0)``. A job
    running when the parent dies finishes and writes its result first. Outside a loky worker
    (plain ``cl-run``, the basic launcher, SLURM) it does nothing.
    """
    if not multiprocessing.current_process().name.startswith("LokyProcess"):
        yield
        return
    with _jobs_lock:
        if _jobs["parent"] is None:
            _jobs["parent"] = os.getppid()
            threading.Thread(target=_exit_when_orphaned, args=(poll_s,), daemon=True,
                             name="cl-runner-orphan-watch").start()
        _jobs["running"] += 1
    try:
        yield
    finally:
        with _jobs_lock:
            _jobs["running"] -= 1


#: the ``hydra.job.env_set`` entry that tells every job of a sweep which keys the sweep varies
#: (read by the job folder name, ``conf/config.yaml``: :func:`cl_runner.results.names.job_folder_name`)
SWEPT_ENV = "CL_RUNNER_SWEPT"


def swept_keys(sweep_overrides: Sequence[str], sweeper_params: Iterable[str] = ()) -> list[str]:
    """The keys a sweep varies: those of its command-line sweep overrides (``a=1,2``,
    ``range(...)``, ``choice(...)``, ``glob(...)``, ``interval(...)``, as Hydra parses them)
    and of ``hydra.sweeper.params`` (an Optuna search space), sorted.

    Raises:
        hydra.errors.OverrideParseException: an override Hydra cannot parse (Hydra reports it
            the same way when it parses them).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    keys = {o.key_or_group for o in parsed if o.is_sweep_override()}
    keys.update(str(k) for k in sweeper_params)
    return sorted(keys)


def announce_swept_keys(config: Any) -> None:
    """Make every job of the sweep ``config`` (Hydra's master config, in
    ``on_multirun_start``) know which keys the sweep varies, so that its folder name leads
    with them: a Hydra override ``++hydra.job.env_set.CL_RUNNER_SWEPT='KEY KEY ...'`` added to
    the overrides Hydra composes every job with (``hydra.overrides.hydra``). Nothing is
    added when the sweep varies nothing or the overrides do not parse (Hydra then reports
    them)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, read_write

    params = OmegaConf.select(config, "hydra.sweeper.params")
    try:
        keys = swept_keys(list(config.hydra.overrides.task),
                          params.keys() if params is not None else ())
    except HydraException:
        return
    entry = f"++hydra.job.env_set.{SWEPT_ENV}="
    with read_write(config.hydra.overrides):
        kept = [o for o in config.hydra.overrides.hydra if not str(o).startswith(entry)]
        if keys:
            kept.append(f"{entry}'{' '.join(keys)}'")
        config.hydra.overrides.hydra = kept
