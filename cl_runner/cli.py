"""Console entry points (Hydra apps). No logic here: see ``experiment.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from cl_runner.config import register_configs
from cl_runner.errors import CLRunnerError

register_configs()

#: the repository's conf/ folder (the package is installed in editable mode by `make setup`)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


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
    table.add_row("wall time", f"{summary['wall_time_seconds']:.1f} s")
    table.add_row("steps per second", f"{summary['steps_per_second']:.0f}")
    return table


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run(cfg: DictConfig) -> float:
    """``cl-run``: train one task sequence; returns the final average accuracy."""
    from cl_runner.dispatch import resolve
    from cl_runner.experiment import run_experiment

    console = Console(stderr=True)
    out_dir = HydraConfig.get().runtime.output_dir
    try:
        summary = run_experiment(resolve(cfg), out_dir)
    except CLRunnerError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    Console().print(summary_table(summary))
    Console().print(f"run folder: {out_dir}")
    return summary["average_accuracy"]
