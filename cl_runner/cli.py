"""Console entry points (Hydra apps). No logic here: see ``experiment.py``."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.table import Table
from rich.text import Text

from cl_runner.config import CONF_DIR, register_configs
from cl_runner.console import console as make_console
from cl_runner.errors import CLRunnerError, RunInterrupted
from cl_runner.results.metrics import METRICS

register_configs()
log = logging.getLogger(__name__)

__all__ = ["CONF_DIR", "RunFolderCallback", "app", "run", "summary_table"]


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table of a run's final metrics: one row per declared metric
    (:data:`cl_runner.results.metrics.METRICS`, those with a ``table`` label) that the summary
    holds, formatted by its kind (accuracy in %, forgetting as a fraction, time in s); ``n/a``
    for an undefined value, "not evaluated" for forward transfer under
    ``eval.future_tasks=none``."""
    where = ("; accuracy on the validation split, held out of the training data"
             if summary.get("evaluated_on") == "validation" else "")
    table = Table(title=f"{summary['strategy']} on {summary['benchmark']} "
                        f"({summary['num_tasks']} tasks, seed {summary['seed']}{where})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for metric in METRICS.values():
        if metric.table is None or metric.name not in summary:
            continue
        if metric.shown_if is not None and not summary.get(metric.shown_if, True):
            continue
        value = summary[metric.name]
        label = metric.table
        if metric.name == "total_cost_floats" and value == summary.get(
                "parameter_cost", {}).get("shared_floats"):
            label += " (the model)"  # nothing stored besides the model
        ok = isinstance(value, int | float) and value == value  # not None, not NaN
        future = summary.get("config", {}).get("eval", {}).get("future_tasks", "all")
        missing = ("not evaluated (eval.future_tasks=none)"
                   if metric.needs_initial and future == "none" else "n/a")
        table.add_row(label, metric.format(value) if ok else missing)
    return table


def override_arg(key: str, value: str) -> str:
    """The shell argument that sets ``key`` to ``value`` in a Hydra override: ``key=value``, or
    ``"key='value'"`` when the value holds characters that the override grammar reads as syntax
    (``=``, ``,``, brackets, spaces...) and the shell must pass on as they are."""
    if re.fullmatch(r"[\w./~+-]*", value):
        return f"{key}={value}"
    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"\"{key}='{quoted}'\""


def error_line(exc: BaseException) -> Text:
    """``error: MESSAGE`` for the terminal, the message shown as is (no rich markup)."""
    return Text.assemble(("error:", "bold red"), " ", str(exc))


class RunFolderCallback(Callback):
    """Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): before Hydra makes the
    run or sweep folder, make it here, so a folder that cannot be made (a file of that name,
    a read-only place) gives one line and exit 2 instead of Hydra's traceback; tell a sweep's
    jobs which keys it varies (:func:`cl_runner.sweep.announce_swept_keys`); before a sweep
    replaces a sweep folder's ``multirun.yaml``, keep the old one as ``multirun-<time>.yaml``
    unless it is the same sweep (a relaunch to resume it)."""

    @staticmethod
    def _make(folder: str) -> None:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = ("a file of that name exists" if isinstance(exc, FileExistsError)
                      else exc.strerror or str(exc))
            make_console(stderr=True).print(error_line(Exception(
                f"cannot use {folder} as the run folder: {reason}")), soft_wrap=True)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from datetime import datetime

        from omegaconf import OmegaConf

        from cl_runner.sweep import announce_swept_keys

        announce_swept_keys(config)  # job folder names lead with the swept keys
        sweep = Path(str(config.hydra.sweep.dir))
        self._make(str(sweep))
        record = sweep / "multirun.yaml"
        if not record.is_file() or record.read_text() == OmegaConf.to_yaml(config):
            return
        stamp = datetime.fromtimestamp(record.stat().st_mtime).strftime("%Y-%m-%d_%H-%M-%S")
        kept, n = sweep / f"multirun-{stamp}.yaml", 1
        while kept.exists():
            kept, n = sweep / f"multirun-{stamp}-{n}.yaml", n + 1
        record.rename(kept)
        log.info("kept the earlier sweep's record %s as %s", record.name, kept.name)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """After an Optuna search: a table of all its trials (every job folder of the sweep
        folder, earlier launches too), best first, rounded (:func:`cl_runner.objective.trials_frame`)."""
        from omegaconf import OmegaConf

        if "optuna" not in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
            return
        from cl_runner.objective import trials_frame, trials_table

        params = list(OmegaConf.select(config, "hydra.sweeper.params", default=None) or {})
        frame = trials_frame(str(config.hydra.sweep.dir), params)
        if len(frame):
            make_console().print(trials_table(frame, f"all {len(frame)} trials of "
                                                     f"{config.hydra.sweep.dir}, best first"))


def run() -> float | None:
    """``cl-run``: :func:`app`, with Ctrl-C outside a run's steps (importing PyTorch, reading
    data) reported in one line, exit 130, instead of a traceback; output cut off by its
    reader (``cl-run --help | head``) ends quietly with exit 141 (128 + SIGPIPE), as a Unix
    tool killed by SIGPIPE does."""
    try:
        return app()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error
        sys.exit(128 + signal.SIGPIPE)  # when Python flushes stdout at exit
    except KeyboardInterrupt as exc:
        make_console(stderr=True).print(Text(f"interrupted (Ctrl-C{': ' if str(exc) else ''}"
                                             f"{exc}); a run folder already started says "
                                             f"so and the same command resumes it"),
                                        soft_wrap=True)
        sys.exit(130)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float | None:
    """``cl-run``: :func:`run_job`; in a joblib worker, the worker leaves once the job is done
    if its ``cl-run -m`` is gone (:func:`cl_runner.sweep.leave_when_orphaned`)."""
    from cl_runner import sweep

    with sweep.leave_when_orphaned():
        return run_job(cfg)


def run_job(cfg: DictConfig) -> float | None:
    """``cl-run``: train one task sequence; returns the final average accuracy (to a sweeper:
    the objective of :mod:`cl_runner.objective`, e.g. the mean over ``objective.seeds``).

    Before anything is written into the run folder it is checked
    (:func:`cl_runner.results.run_folder.check_run_folder`): a complete result of the same
    config is skipped unless ``force=true``; a complete result of another config, or a run going
    on in a live process, is refused (exit 2; in a multirun that job fails and the others run),
    the folder left as it was; ``force=true`` replaces a complete result. In a multirun a job
    that raises is recorded as failed in its folder and the exception goes back to Hydra, which
    runs the other jobs (see ``cl_runner/sweep.py``). The rules live in :mod:`cl_runner.job`,
    shared with the Python API (:func:`cl_runner.api.run`).

    Exit status: 0 done (or skipped), 1 a Hydra error (an override that does not compose: an
    unknown key or option, a wrong type) or an unexpected exception, 2 a
    :class:`~cl_runner.errors.CLRunnerError` (an invalid value, missing or corrupt data, a
    refused run folder), 130 / 143 interrupted by SIGINT / SIGTERM (resumable).
    """
    from cl_runner import job, objective, slurm, sweep
    from cl_runner.results import run_folder

    console = make_console(stderr=True)
    hydra_cfg = HydraConfig.get()
    out_dir = hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        scored = objective.run_objective(cfg, out_dir, HydraConfig.instance().cfg)
    except RunInterrupted as exc:  # status "interrupted" is in summary.json already
        again = ("the same sweep command again (same hydra.sweep.dir)" if multirun else
                 f"the same command again with {override_arg('hydra.run.dir', out_dir)}")
        kept = (f"the rows and the resume state of tasks 1..{exc.tasks_done} are in {out_dir}; "
                f"{slurm.resume_advice(again)}" if exc.tasks_done else
                f"no task was finished, nothing to resume; run {again} to start it")
        console.print(f"{exc}: {kept}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except run_folder.RunFolderError as exc:  # nothing was written into the folder
        if multirun:
            log.error("job refused: %s (the other jobs go on)", exc)
            raise
        console.print(error_line(exc), soft_wrap=True)
        sys.exit(2)
    except Exception as exc:  # recorded in the folder's summary.json by job.execute
        if multirun and slurm.scheduler_stop(exc):  # summary.json says interrupted
            job_id = slurm.slurm_job_id()
            if job_id is not None and slurm.requeued(job_id):
                log.warning("stopped by the scheduler (%s); SLURM requeued job %s: it resumes "
                            "by itself from %s when it starts again", exc, job_id, out_dir)
                sys.exit(128 + signal.SIGTERM)  # no result: the sweep waits for the job
            log.error("job stopped at its SLURM time limit and not requeued (%s): the finished "
                      "tasks and their resume state are in %s; run the same sweep command again "
                      "(same hydra.sweep.dir) to resume; hydra.launcher.max_num_timeout sets how "
                      "often submitit requeues a job", exc, out_dir)
            raise
        if multirun:
            recorded = job.failure_record(out_dir, exc)
            where = (f"recorded in {recorded}" if recorded is not None else
                     f"not recorded: {out_dir} left as it was")
            log.error("job failed: %s (%s; the other jobs go on)", sweep.error_text(exc), where)
            raise
        if isinstance(exc, CLRunnerError):
            console.print(error_line(exc), soft_wrap=True)
            sys.exit(2)
        raise
    if scored.results and all(r.skipped for r in scored.results) and not scored.diverged \
            and not objective.multi_seed(cfg):
        return scored.value  # a complete result of this config: skipped, nothing to show
    out = make_console()
    for result in scored.results:
        if not result.skipped:
            out.print(summary_table(result.summary))
    if objective.multi_seed(cfg) or scored.diverged:
        each = ", ".join(f"seed {k}: {100 * v:.2f}%" for k, v in scored.per_seed.items())
        out.print(Text(f"objective: {100 * scored.value:.2f}% ({each})"), soft_wrap=True)
    out.print(Text(f"run folder: {out_dir}"), soft_wrap=True)
    return scored.value
