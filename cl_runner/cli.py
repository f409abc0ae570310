"""Console entry points (Hydra apps). No logic here: see ``experiment.py``."""

from __future__ import annotations

import logging
import re
import signal
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.table import Table
from rich.text import Text

from cl_runner.config import CONF_DIR, register_configs
from cl_runner.console import console as make_console
from cl_runner.errors import CLRunnerError, RunInterrupted

register_configs()
log = logging.getLogger(__name__)

__all__ = ["CONF_DIR", "run", "summary_table"]


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table of a run's final metrics (accuracy in %, forgetting as a fraction)."""
    table = Table(title=f"{summary['strategy']} on {summary['benchmark']} "
                        f"({summary['num_tasks']} tasks, seed {summary['seed']})")
    table.add_column("metric")
    table.add_column("value", justify="right")

    def fmt(value: Any, percent: bool) -> str:
        if value is None or value != value:  # None or NaN
            return "n/a"
        return f"{100 * value:.2f}%" if percent else f"{value:.4f}"

    table.add_row("average accuracy", fmt(summary["average_accuracy"], True))
    table.add_row("forgetting", fmt(summary["forgetting"], False))
    table.add_row("backward transfer", fmt(summary["backward_transfer"], False))
    table.add_row("forward transfer", fmt(summary.get("forward_transfer"), False))
    table.add_row("learning accuracy", fmt(summary["learning_accuracy"], True))
    if "task_inferred_average_accuracy" in summary:  # supermask strategies
        table.add_row("average accuracy, task inferred",
                      fmt(summary["task_inferred_average_accuracy"], True))
        table.add_row("task inference accuracy", fmt(summary.get("task_inference_average_accuracy"),
                                                     True))
    if "task_cost_floats" in summary:  # float32 equivalents (Strategy.parameter_cost)
        if summary.get("stores_per_task", summary["task_cost_floats"] > 0):
            table.add_row("floats stored per task (mean)", f"{summary['task_cost_floats']:,.0f}")
        model_only = summary["total_cost_floats"] == summary["parameter_cost"]["shared_floats"]
        table.add_row("floats stored in all" + (" (the model)" if model_only else ""),
                      f"{summary['total_cost_floats']:,.0f}")
    table.add_row("wall time", f"{summary['wall_time_seconds']:.1f} s")
    table.add_row("steps per second", f"{summary['steps_per_second']:.1f}")
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


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
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
        console.print(f"{exc}: the rows and the resume state of tasks 1..{exc.tasks_done} are "
                      f"in {out_dir}; {slurm.resume_advice(again)}", markup=False,
                      highlight=False, soft_wrap=True)
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
            recorded = job.failure_record(out_dir)
            where = (f"recorded in {recorded}" if recorded is not None else
                     f"not recorded: {out_dir} holds a complete result, left as it was")
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
