"""Console entry points (Hydra apps). No logic here: see ``experiment.py``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from cl_runner.config import CONF_DIR, register_configs
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
    if "task_cost_floats" in summary:
        table.add_row("floats stored per task / in all",
                      f"{summary['task_cost_floats']:,.0f} / {summary['total_cost_floats']:,.0f}")
    table.add_row("wall time", f"{summary['wall_time_seconds']:.1f} s")
    table.add_row("steps per second", f"{summary['steps_per_second']:.1f}")
    return table


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
    """``cl-run``: train one task sequence; returns the final average accuracy.

    A run folder that already holds a complete result for the same config is skipped unless
    ``force=true``. In a multirun a job that raises is recorded as failed in its folder and the
    exception goes back to Hydra, which runs the other jobs (see ``cl_runner/sweep.py``).
    """
    from cl_runner import sweep
    from cl_runner.dispatch import resolve

    console = Console(stderr=True)
    hydra_cfg = HydraConfig.get()
    out_dir = hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        run_cfg = resolve(cfg)  # config errors answer here, before PyTorch is imported
        from cl_runner.experiment import config_dict, run_experiment  # imports torch

        if not run_cfg.force:
            done = sweep.complete_result(out_dir, config_dict(run_cfg))
            if done is not None:
                log.info("skipped: %s already holds a complete result for this config "
                         "(force=true re-runs it)", out_dir)
                return done.get("average_accuracy")
        summary = run_experiment(run_cfg, out_dir)
    except RunInterrupted as exc:  # status "interrupted" is in summary.json already
        again = ("the same sweep command again (same hydra.sweep.dir)" if multirun else
                 f"the same command again with hydra.run.dir={out_dir}")
        console.print(f"{exc}: the rows and the resume state of tasks 1..{exc.tasks_done} are "
                      f"in {out_dir}; run {again} to resume", markup=False, highlight=False,
                      soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        sweep.record_failure(out_dir, exc, {
            key: OmegaConf.select(cfg, path, default=None, throw_on_resolution_failure=False)
            for key, path in (("strategy", "strategy.name"), ("benchmark", "benchmark.name"),
                              ("seed", "seed"))})
        if multirun:
            log.error("job failed: %s (recorded in %s; the other jobs go on)",
                      sweep.error_text(exc), Path(out_dir) / sweep.SUMMARY)
            raise
        if isinstance(exc, CLRunnerError):
            console.print(f"[bold red]error:[/] {exc}")
            sys.exit(2)
        raise
    Console().print(summary_table(summary))
    Console().print(f"run folder: {out_dir}")
    return summary["average_accuracy"]
