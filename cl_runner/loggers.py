"""Loggers (``logger=tensorboard|wandb``): a run's metrics sent to TensorBoard or Weights &
Biases from one runner hook, never from the training step or a strategy.

What is logged (the same names in both; docs/logging.md):

- ``config``: the resolved run config, once at the start (TensorBoard: a text entry; W&B: the
  run's config).
- per task t (x axis ``task``): ``task/average_accuracy`` (tasks 1..t), ``task/accuracy``
  (task t right after learning it), ``task/forgetting`` (tasks 1..t, from t = 2),
  ``task/seconds``, and ``accuracy/task_NN`` (every learned task's accuracy after task t).
- every ``logger.every_steps`` optimizer steps (x axis ``global_step``, counted over every
  phase as continual evaluation counts it): ``train/loss``, the mean training loss of those
  steps (accumulated on the device, read once per window: no host sync per step), and
  ``train/lr``, the optimizer's learning rate; a strategy's own phase logs
  ``train/loss_<phase>`` (MC-SGD: ``train/loss_line``, the line objective). A window ends at
  the end of a phase too.
- with ``eval.every_steps`` or ``eval.every_examples`` (x axis ``global_step``):
  ``continual/accuracy_task_NN`` and ``continual/loss_task_NN``, each evaluation point of
  :mod:`cl_runner.training.continual_eval`, one point per step: where a periodic point and a
  task end share a step, the task end (after the strategy's ``after_training``) is the one sent.
- at the end (also of a failed or interrupted run, with what it has): the accuracy matrix
  (TensorBoard: a heatmap figure with the numbers in its cells; W&B: a table and the heatmap)
  and the summary's scalar metrics (``final/...``; W&B: the run summary), the run's status. An
  offline W&B run logs where it went and the ``wandb sync`` command that uploads it.

The loggers are optional dependencies (the ``loggers`` extra); choosing one that is not
installed is refused before any data are read.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_runner.config import LoggerConfig, LoggerName, WandbMode
from cl_runner.errors import ConfigError
from cl_runner.results import metrics, run_folder
from cl_runner.results.continual_metrics import EvalRow
from cl_runner.training.hooks import RunnerHook
from cl_runner.training.result import SequenceResult

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


#: the file in the run folder holding the W&B run id (a resumed run continues the same W&B run;
#: a forced or ``resume=false`` run finds none and starts a new one: run_folder.RESULT_FILES)
WANDB_ID_FILE = run_folder.WANDB_RUN_ID


def task_scalars(task: int, result: SequenceResult) -> dict[str, float]:
    """The per-task values logged after task ``task`` (1-based): see the module docstring."""
    rows = [row[:task] for row in result.accuracy[:task]]  # the learned tasks' block
    out = {"task/average_accuracy": sum(rows[-1]) / task,
           "task/accuracy": rows[-1][task - 1],
           "task/seconds": result.task_seconds[task - 1]}
    if task > 1:
        out["task/forgetting"] = metrics.forgetting(rows)
    out.update({f"accuracy/task_{j:02d}": acc for j, acc in enumerate(rows[-1], start=1)})
    return out


def continual_scalars(rows: list[EvalRow]) -> dict[int, dict[str, float]]:
    """Continual-evaluation rows grouped by global step: ``{global_step: {name: value}}``."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for r in rows:
        out[r.global_step][f"continual/accuracy_task_{r.eval_task:02d}"] = r.accuracy
        out[r.global_step][f"continual/loss_task_{r.eval_task:02d}"] = r.loss
    return dict(out)


def final_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The finite scalar metrics of a ``summary.json`` dict, as ``final/<name>``: every
    declared metric (:data:`cl_runner.results.metrics.METRICS`) the summary holds."""
    out = {}
    for key in metrics.METRICS:
        value = summary.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            out[f"final/{key}"] = float(value)
    return out


def accuracy_heatmap(accuracy: list[list[float]], num_tasks: int) -> Figure:
    """The accuracy matrix (rows: after task i; columns: on task j; percent) as a figure."""
    import numpy as np
    from matplotlib.figure import Figure

    grid = np.full((num_tasks, num_tasks), np.nan)
    for i, row in enumerate(accuracy):
        grid[i, : len(row)] = 100 * np.asarray(row)
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    ticks = range(0, num_tasks, max(1, num_tasks // 10))
    ax.set_xticks(list(ticks), [str(t + 1) for t in ticks])
    ax.set_yticks(list(ticks), [str(t + 1) for t in ticks])
    if num_tasks <= 20:  # the numbers in the cells (%), while they fit
        for (i, j), value in np.ndenumerate(grid):
            if math.isfinite(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center",
                        fontsize=8 if num_tasks <= 10 else 6,
                        color="black" if value > 60 else "white")
    return fig


def figure_pixels(fig: Figure):
    """The rendered figure as an RGB uint8 array ``(H, W, 3)`` (Agg; no pyplot)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class MetricLogger(RunnerHook):
    """Base of the loggers: turns the runner's events into named scalars (module docstring)
    and hands them to :meth:`scalars`; a subclass writes them somewhere.

    Args:
        out_dir: the run folder.
        config: the resolved run config (plain data).
        num_tasks: T.
        every_steps: N, the window of ``train/loss`` and ``train/lr`` in optimizer steps.

    Attributes:
        learning_rate: returns the current optimizer's learning rate (set by the runner when
            it builds a task's optimizer), or None: no ``train/lr``.
    """

    def __init__(self, out_dir: str | Path, config: dict[str, Any], num_tasks: int,
                 every_steps: int) -> None:
        self.out_dir = Path(out_dir)
        self.config = config
        self.num_tasks = num_tasks
        self.every_steps = every_steps
        self.accuracy: list[list[float]] = []
        self.learning_rate: Callable[[], float] | None = None
        self.global_step = 0
        self._phase = "train"
        self._loss_sum: torch.Tensor | None = None  # on the device: the window's sum
        self._window = 0
        self._pending: tuple[int, dict[str, float]] | None = None  # the last continual point

    def before_phase(self, task: int, phase: str, total_steps: int) -> None:
        self._phase = phase

    def after_step_loss(self, loss: torch.Tensor) -> None:
        """Add the step's loss to the window's sum on the device (no host sync); every
        ``every_steps`` steps, send the window's mean (:meth:`_send_loss`)."""
        self.global_step += 1
        if self._loss_sum is None:
            self._loss_sum = loss.detach().float().clone()
        else:
            self._loss_sum.add_(loss.detach())
        self._window += 1
        if self._window == self.every_steps:
            self._send_loss()

    def after_phase(self, task: int, phase: str) -> None:
        if self._window:  # a window never mixes two phases' losses
            self._send_loss()

    def _send_loss(self) -> None:
        """The window's mean loss (the one host sync of the window) and the learning rate."""
        mean = (self._loss_sum / self._window).item()
        self._loss_sum, self._window = None, 0
        values = {"train/loss" if self._phase == "train" else f"train/loss_{self._phase}": mean}
        if self._phase == "train" and self.learning_rate is not None:
            values["train/lr"] = float(self.learning_rate())
        self.scalars(values, "global_step", self.global_step)

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        self.accuracy = [list(row) for row in result.accuracy]
        self.scalars(task_scalars(task, result), "task", task)

    def continual_eval(self, rows: list[EvalRow]) -> None:
        """New continual-evaluation rows (the ``on_rows`` of
        :class:`~cl_runner.training.continual_eval.ContinualEvalHook`). A point is held until
        the next one (or the run's end): a task end at the same step replaces it (one point
        per step)."""
        for step, values in continual_scalars(rows).items():
            if self._pending is not None and self._pending[0] != step:
                self._flush_continual()
            self._pending = (step, values)

    def _flush_continual(self) -> None:
        if self._pending is not None:
            self.scalars(self._pending[1], "global_step", self._pending[0])
            self._pending = None

    def state_dict(self) -> dict[str, Any]:
        """The optimizer steps so far (a resumed run's ``train/loss`` continues the x axis)."""
        return {"global_step": self.global_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_step = int(state.get("global_step", 0))

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        """Write ``values`` at ``step`` of x axis ``axis`` (``task`` or ``global_step``)."""
        raise NotImplementedError

    def finish(self, summary: dict[str, Any]) -> None:
        """The run ended (complete, failed or interrupted): final metrics, close."""


class TensorBoardLogger(MetricLogger):
    """``logger=tensorboard``: event files in ``<run folder>/tensorboard`` (``SummaryWriter``
    of :mod:`torch.utils.tensorboard`). Per-task scalars use the task as step, continual ones
    the global optimizer step."""

    DIR = run_folder.TENSORBOARD

    def __init__(self, out_dir: str | Path, config: dict[str, Any], num_tasks: int,
                 every_steps: int) -> None:
        super().__init__(out_dir, config, num_tasks, every_steps)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.out_dir / self.DIR))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def finish(self, summary: dict[str, Any]) -> None:
        self._flush_continual()
        if self.accuracy:
            self.writer.add_figure("accuracy_matrix", accuracy_heatmap(
                self.accuracy, self.num_tasks), len(self.accuracy))
        for name, value in final_scalars(summary).items():
            self.writer.add_scalar(name, value, len(self.accuracy))
        self.writer.add_text("status", str(summary.get("status")), len(self.accuracy))
        self.writer.close()


class WandbLogger(MetricLogger):
    """``logger=wandb``: one W&B run per run folder (``name`` = the folder's name, local files
    in ``<run folder>/wandb``); a resumed run continues the same W&B run (its id is kept in
    ``wandb_run_id.txt``). ``task/*`` and ``accuracy/*`` are plotted against ``task``,
    ``continual/*`` against ``global_step`` (``define_metric``)."""

    def __init__(self, out_dir: str | Path, config: dict[str, Any], num_tasks: int,
                 cfg: LoggerConfig) -> None:
        super().__init__(out_dir, config, num_tasks, cfg.every_steps)
        self.mode = cfg.mode
        import wandb

        self._wandb = wandb
        id_file = self.out_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        if run_id is None:
            run_id = secrets.token_hex(6)  # W&B ids: lowercase letters and digits
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags),
            mode=cfg.mode.value, dir=str(self.out_dir), name=self.out_dir.name, id=run_id,
            resume="allow", config=config, settings=wandb.Settings(silent=True, console="off"))
        for axis, pattern in (("task", "task/*"), ("task", "accuracy/*"),
                              ("global_step", "continual/*"), ("global_step", "train/*")):
            self.run.define_metric(axis)
            self.run.define_metric(pattern, step_metric=axis)

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        self.run.log({axis: step, **values})

    def finish(self, summary: dict[str, Any]) -> None:
        wandb = self._wandb
        self._flush_continual()
        if self.accuracy:
            columns = ["after_task"] + [f"task_{j:02d}" for j in range(1, self.num_tasks + 1)]
            rows = [[i] + row + [None] * (self.num_tasks - len(row))
                    for i, row in enumerate(self.accuracy, start=1)]
            self.run.log({"accuracy_matrix": wandb.Table(columns=columns, data=rows),
                          "accuracy_matrix_heatmap": wandb.Image(
                              figure_pixels(accuracy_heatmap(self.accuracy, self.num_tasks)))})
        self.run.summary.update({**final_scalars(summary), "status": summary.get("status")})
        local = Path(self.run.dir).parent  # .../wandb/offline-run-DATE-ID (its files/ is run.dir)
        self.run.finish(exit_code=0 if summary.get("status") == "complete" else 1)
        if self.mode == WandbMode.offline:
            log.info("W&B offline run saved in %s; upload it with: wandb sync %s", local, local)


def check_logger(cfg: LoggerConfig) -> None:
    """Refuse a logger whose package is not installed (before any data are read).

    Raises:
        ConfigError: ``logger=tensorboard`` without ``tensorboard``, or ``logger=wandb``
            without ``wandb`` (the message says how to install them); ``logger.every_steps``
            below 1.
    """
    if cfg.every_steps < 1:
        raise ConfigError(f"logger.every_steps must be at least 1, got {cfg.every_steps}")
    package = {LoggerName.tensorboard: "tensorboard", LoggerName.wandb: "wandb"}.get(cfg.name)
    if package is None:
        return
    try:
        __import__(package)
    except ImportError as exc:
        raise ConfigError(f"logger={cfg.name.value} needs the {package} package ({exc}); "
                          f"install the loggers extra: pip install -e '.[loggers]'") from None


def build_logger(cfg: LoggerConfig, out_dir: str | Path, config: dict[str, Any],
                 num_tasks: int) -> MetricLogger | None:
    """The logger ``cfg`` names (None for ``logger=none``); see :func:`check_logger`."""
    check_logger(cfg)
    if cfg.name == LoggerName.tensorboard:
        return TensorBoardLogger(out_dir, config, num_tasks, cfg.every_steps)
    if cfg.name == LoggerName.wandb:
        return WandbLogger(out_dir, config, num_tasks, cfg)
    return None
