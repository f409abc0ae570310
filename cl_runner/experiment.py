"""One run: build the components, train the task sequence, write the run files."""

from __future__ import annotations

import dataclasses
import enum
import logging
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import cl_runner
from cl_runner import dispatch
from cl_runner.config import RunConfig
from cl_runner.errors import ConfigError
from cl_runner.loggers import MetricLogger, build_logger, check_logger
from cl_runner.results import metrics
from cl_runner.results.continual_metrics import continual_metrics
from cl_runner.results.run_folder import (
    ACCURACY_MATRIX,
    METRICS,
    RESUME_FILE,
    SUMMARY,
    check_run_folder,
    clear_results,
    comparable_config,
    process_record,
    write_summary,
)
from cl_runner.results.writer import atomic_write_csv
from cl_runner.resume import (
    Attempts,
    InterruptHook,
    ResumeHook,
    RunInterrupted,
    named_hooks,
    read_resume_state,
    restore,
)
from cl_runner.runner_hooks import CheckpointHook, ResultsHook, write_results
from cl_runner.slurm import scheduler_stop
from cl_runner.training.continual_eval import CONTINUAL_EVAL, ContinualEvalHook
from cl_runner.training.evaluate import Evaluator, task_of_class
from cl_runner.training.hooks import RunnerHook
from cl_runner.training.loop import train_sequence
from cl_runner.training.progress import ProgressHook, TrainingProgress

log = logging.getLogger(__name__)

__all__ = ["ACCURACY_MATRIX", "METRICS", "SUMMARY", "run_experiment", "write_results"]


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    import hydra
    import torchvision

    return {"python": platform.python_version(), "cl_runner": cl_runner.__version__,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "hydra": hydra.__version__}


def git_commit() -> str | None:
    """The commit of the source tree (suffix ``-dirty`` with uncommitted changes), or None."""
    src = Path(cl_runner.__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def config_dict(run: RunConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able data."""
    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(run))


def parameter_cost_summary(cost: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` fields of a strategy's ``parameter_cost`` (see
    :meth:`~cl_runner.strategies.base.Strategy.parameter_cost`): the detail under
    ``parameter_cost`` plus the scalars ``task_cost_floats`` (mean over tasks of the float32
    equivalents stored for one task alone), ``total_cost_floats`` (shared + state + all
    tasks') and ``stores_per_task`` (whether anything is stored per task: ``task_cost_floats``
    is shown only then)."""
    per_task = cost["task_floats"]
    return {"parameter_cost": cost,
            "task_cost_floats": sum(per_task) / len(per_task) if per_task else 0.0,
            "total_cost_floats": cost["shared_floats"] + cost.get("state_floats", 0.0)
            + sum(per_task),
            "stores_per_task": any(f > 0 for f in per_task)}


def extra_matrix_summary(matrices: dict[str, list[list[float]]]) -> dict[str, Any]:
    """``summary.json`` fields of the matrices beside the headline (``task_il``,
    ``task_inferred``, ``task_inference``): per name, all metrics
    of the matrix under ``<name>``, and ``<name>_average_accuracy`` and ``<name>_forgetting``
    at the top level (for ``cl-summarize``). Rows may hold NaN for tasks not evaluated (not
    learned yet); the metrics only read learned tasks' entries."""
    out: dict[str, Any] = {}
    for name, rows in matrices.items():
        if len(rows) == 0 or len(rows) != len(rows[0]):
            continue
        values = metrics.all_metrics(rows)
        out[name] = values
        out[f"{name}_average_accuracy"] = values["average_accuracy"]
        out[f"{name}_forgetting"] = values["forgetting"]
    return out


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` built before the run folder is touched: the device, the resume
    state (None: start at task 1), the run's generator, the optimizer factory and the
    strategy."""

    device: torch.device
    state: dict[str, Any] | None
    generator: torch.Generator
    optimizer: Any
    strategy: Any


def prepare(run: RunConfig, out_dir: Path, config: dict[str, Any]) -> Prepared:
    """Everything that may refuse a run, done before anything is written into ``out_dir``
    (a refusal changes no file): the device, the resume state of an unfinished run of the same
    config (read and checked), the strategy (its own value checks), the continual-evaluation
    settings and the logger's package. Seeds PyTorch's global generator with ``run.seed``.

    Raises:
        ConfigError: a value out of range; RunFolderError (a ConfigError): the folder's
            resume state is of another config, unreadable or holds non-finite weights.
    """
    device = dispatch.setup_hardware(run.hardware)
    state = (read_resume_state(out_dir, comparable_config(config), device) if run.resume
             else None)
    torch.manual_seed(run.seed)  # model initialization and dropout
    generator = torch.Generator().manual_seed(run.seed)  # shuffles and strategies' choices
    optimizer = dispatch.optimizer_factory(run)
    strategy = dispatch.build_strategy(run)
    periods = {k: v for k in ("every_steps", "every_examples")
               if (v := getattr(run.eval, k)) is not None}
    if len(periods) > 1:
        raise ConfigError("eval.every_steps and eval.every_examples are two spacings of the same "
                          "evaluation points: set one of them")
    if periods and min(*periods.values(), run.eval.subset_size) < 1:
        key = next(iter(periods))
        raise ConfigError(f"eval.{key} and eval.subset_size must be at least 1, got "
                          f"{periods[key]} and {run.eval.subset_size}")
    if periods and strategy.overrides("eval_task"):
        key = next(iter(periods))
        raise ConfigError(f"eval.{key}: continual evaluation does not support strategy "
                          f"{run.strategy.name!r} (its evaluation switches the model's masks "
                          f"per task); leave eval.{key}=null")
    check_logger(run.logger)
    return Prepared(device, state, generator, optimizer, strategy)


def run_experiment(run: RunConfig, out_dir: str | Path,
                   on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the configured task sequence and write every run file into ``out_dir``.

    Files: ``accuracy_matrix.csv`` and ``metrics.csv`` (rewritten after every task; also a
    matrices beside the headline, e.g. ``accuracy_matrix_task_il.csv``; ``confusion.csv`` on
    class-incremental benchmarks),
    ``summary.json`` (``status: running`` and the process's ``pid``, ``host`` and
    ``pid_start`` at the start; ``complete``, ``failed`` or ``interrupted`` at the end),
    ``resume.pt`` (the resume state, rewritten after every task,
    removed when the run completes; :mod:`cl_runner.resume`),
    plus the benchmark's own tables (``angles.csv`` / ``permutations.csv``); with
    ``checkpoints.enabled`` the ``checkpoints/`` folder (:mod:`cl_runner.results.checkpoints`),
    with ``probes`` listed ``diagnostics.csv`` (:mod:`cl_runner.analysis.probes`).

    Args:
        on_start: called once every check passed (:func:`prepare`), right before the first
            write into ``out_dir`` (:mod:`cl_runner.job` writes ``.hydra/`` there).

    Returns:
        The summary dictionary written to ``summary.json``.

    A folder holding the resume state of an unfinished run of the same config (``resume``,
    default true) continues that run after its last finished task; the files then end
    byte-identical to an uninterrupted run's.

    The caller decides whether a complete result in ``out_dir`` may be replaced
    (:func:`~cl_runner.results.run_folder.check_run_folder`, as ``cl-run`` does); this
    function only refuses a folder whose run is still going on in a live process.

    Raises:
        RunFolderError (a ConfigError): ``out_dir``'s run is going on in a live process, or
            its resume state is from another config, unreadable or non-finite
            (:class:`~cl_runner.resume.ResumeMismatchError`); ConfigError: a value out of
            range. These come from :func:`prepare`, before anything is written.
        DatasetNotFoundError: missing data (the run started: ``status: failed``).
        RunInterrupted: SIGINT or SIGTERM arrived; stopped at a step boundary with the
            finished tasks' rows and resume state on disk (``status: interrupted``).
    """
    t0 = time.perf_counter()  # this attempt's wall time counts from here
    out_dir = Path(out_dir)
    config = config_dict(run)
    check_run_folder(out_dir, config, force=True)  # a run going on in a live process: refused
    prepared = prepare(run, out_dir, config)  # every refusal comes before the first write
    if on_start is not None:
        on_start()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not run.resume:  # start over: no file of the unfinished run outlives it
        clear_results(out_dir)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    state = prepared.state
    attempts = Attempts(state.get("attempts", []) if state else [], started_at,
                        state["task"] if state else None, t0=t0)
    summary: dict[str, Any] = {
        "status": "running", "strategy": run.strategy.name, "benchmark": run.benchmark.name,
        "model": run.model.name, "seed": run.seed, "num_tasks": run.benchmark.num_tasks,
        "started_at": attempts.records()[0]["started_at"], **process_record(), "versions": package_versions(),
        "git_commit": git_commit(), "config": config,
    }
    write_summary(out_dir, summary)
    interrupt = InterruptHook()
    logger: list[MetricLogger] = []  # _train puts the logger here once the data are read
    try:
        with interrupt:
            result, strategy, model, benchmark, data_seconds, resume_hook, hooks = _train(
                run, out_dir, config, summary, interrupt, logger, prepared, attempts)
    except BaseException as exc:
        # SystemExit: the process was told to exit mid-run (submitit exits so after it
        # requeued a preempted or timed-out job); a scheduler stop: submitit's time limit
        # reached once too often (not requeued). Finished tasks are kept, not a failure
        interrupted = (isinstance(exc, RunInterrupted | KeyboardInterrupt | SystemExit)
                       or scheduler_stop(exc))
        summary.update(status="interrupted" if interrupted else "failed",
                       error=f"{type(exc).__name__}: {exc}",
                       **Attempts.totals(attempts.records()))
        if interrupted:
            summary["resume_state"] = (RESUME_FILE if (out_dir / RESUME_FILE).is_file()
                                       else None)
        write_summary(out_dir, summary)
        finish_loggers(logger, summary)
        raise
    train_seconds = sum(result.task_seconds)
    summary.update(metrics.all_metrics(result.accuracy, result.initial_accuracy))
    summary.update(
        status="complete",
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        average_accuracy_per_task=metrics.average_accuracy_curve(result.accuracy),
        initial_accuracy=result.initial_accuracy,
        data_seconds=data_seconds,
        task_seconds=result.task_seconds,
        eval_seconds=result.eval_seconds,
        steps=sum(result.steps),
        steps_per_second=sum(result.steps) / train_seconds if train_seconds > 0 else None,
        learning_rates=result.learning_rates,
        strategy_stats=strategy.stats(),
    )
    summary.update(parameter_cost_summary(strategy.parameter_cost(model, benchmark.num_tasks)))
    summary.update(extra_matrix_summary(result.matrices))
    if result.confusion:
        summary.update(metrics.confusion_metrics(result.confusion, task_of_class(benchmark)))
    summary.update(continual_eval_summary(hooks, benchmark.num_tasks))
    summary.update(Attempts.totals(attempts.records()))  # every attempt, not only this one
    if resume_hook.bytes_written:
        summary["resume_state_bytes"] = max(resume_hook.bytes_written)
        summary["resume_state_seconds"] = sum(resume_hook.seconds_written)  # all tasks
    write_summary(out_dir, summary)
    (out_dir / RESUME_FILE).unlink(missing_ok=True)  # complete: nothing left to resume
    finish_loggers(logger, summary)
    return summary


def finish_loggers(loggers: list[MetricLogger], summary: dict[str, Any]) -> None:
    """Send the end of the run to the loggers; a logger's failure is logged as a warning,
    never raised (the run's own files are already written)."""
    for each in loggers:
        try:
            each.finish(summary)
        except Exception as exc:  # noqa: BLE001 (any logger failure: the result stands)
            log.warning("logger %s failed to finish: %s: %s", type(each).__name__,
                        type(exc).__name__, exc)


def _train(run: RunConfig, out_dir: Path, config: dict[str, Any], summary: dict[str, Any],
           interrupt: InterruptHook, logger: list[MetricLogger], prepared: Prepared,
           attempts: Attempts):
    """Build the data, the model and the hooks (restored from the resume state when there is
    one) and train; the logger (``logger=...``), once built, is appended to ``logger`` for the
    caller to finish. Returns ``(result, strategy, model, benchmark, data_seconds,
    resume_hook, hooks)``."""
    t0 = time.perf_counter()
    device, state, generator = prepared.device, prepared.state, prepared.generator
    optimizer, strategy = prepared.optimizer, prepared.strategy
    summary["device"] = str(device)
    benchmark = dispatch.build_benchmark(run, device)
    summary["evaluated_on"] = ("validation" if run.benchmark.validation_fraction > 0
                               else "test")
    # what the headline accuracy matrix measures: always the benchmark's scenario (a
    # task-given evaluation of another scenario is the task_il matrix beside it)
    summary["scenario"] = Evaluator(benchmark, strategy, 1).scenario
    model = dispatch.build_model(run, benchmark, device)
    for name, frame in benchmark.artifacts().items():
        atomic_write_csv(out_dir / name, frame)
    hooks: list[RunnerHook] = [ResultsHook(out_dir, strategy, benchmark.num_tasks)]
    if run.checkpoints.enabled:
        hooks.append(CheckpointHook(out_dir, run.checkpoints.tasks, model, strategy))
    if run.probes:
        from cl_runner.analysis.probes import ProbeSet  # only loaded when probes are on
        hooks.append(ProbeSet(run.probes, run.probe, benchmark, seed=run.seed,
                              path=out_dir / ProbeSet.FILE, model=model))
    built = build_logger(run.logger, out_dir, config, benchmark.num_tasks)
    if built is not None:
        logger.append(built)
        hooks.append(built)
        optimizer = _telling(optimizer, built)
    if run.eval.every_steps is not None or run.eval.every_examples is not None:
        hooks.append(ContinualEvalHook(
            benchmark, model, run.eval.every_steps, run.eval.subset_size,
            run.benchmark.eval_batch_size, run.seed, path=out_dir / CONTINUAL_EVAL,
            on_rows=built.continual_eval if built is not None else None, strategy=strategy,
            every_examples=run.eval.every_examples, train_batch_size=run.benchmark.batch_size))
    stateful = named_hooks(hooks)
    attempts.continual_eval = next((h for h in hooks if isinstance(h, ContinualEvalHook)), None)
    resume_hook = ResumeHook(out_dir, comparable_config(config), model, strategy, generator,
                             stateful, attempts)
    start = None
    if state is not None:
        start = restore(state, model, strategy, generator, stateful)
        summary["resumed_after_task"] = state["task"]
        log.info("resuming %s after task %d of %d", out_dir, state["task"],
                 benchmark.num_tasks)
        write_summary(out_dir, summary)
    data_seconds = time.perf_counter() - t0
    log.info("%s: %d tasks on %s, data ready in %.1fs; strategy %s, model %s (%d parameters)",
             benchmark.name, benchmark.num_tasks, device, data_seconds, run.strategy.name,
             run.model.name, sum(p.numel() for p in model.parameters()))
    done = 0 if start is None else len(start.accuracy)
    interrupt.tasks_done = done
    with TrainingProgress(benchmark.num_tasks, enabled=run.progress) as progress:
        result = train_sequence(
            benchmark, model, strategy, optimizer,
            batch_size=run.benchmark.batch_size, eval_batch_size=run.benchmark.eval_batch_size,
            epochs_per_task=run.benchmark.epochs_per_task, generator=generator,
            max_steps_per_task=run.benchmark.max_steps_per_task,
            hooks=[ProgressHook(progress, done), *hooks, resume_hook, interrupt], start=start,
            future_tasks=getattr(run.eval.future_tasks, "value", run.eval.future_tasks),
            precision=run.hardware.precision, compile=run.hardware.compile,
        )
    return result, strategy, model, benchmark, data_seconds, resume_hook, hooks


def _telling(make_optimizer: Callable[..., Any], logger: MetricLogger) -> Callable[..., Any]:
    """``make_optimizer`` that also hands each task's optimizer's learning rate to
    ``logger`` (read once per logging window, a Python float: no host sync)."""
    def make(params: Any, task: int) -> Any:
        optimizer = make_optimizer(params, task)
        logger.learning_rate = lambda: optimizer.param_groups[0]["lr"]
        return optimizer
    return make


def continual_eval_summary(hooks: list[RunnerHook], num_tasks: int) -> dict[str, Any]:
    """``summary.json`` fields of continual evaluation (none when it is off): the metrics of
    :func:`~cl_runner.results.continual_metrics.continual_metrics`, the number of evaluation
    points and their wall time in this process (seconds; :func:`run_experiment` then sums
    them over the run's attempts, :class:`~cl_runner.resume.Attempts`)."""
    for hook in hooks:
        if isinstance(hook, ContinualEvalHook):
            return {**continual_metrics(hook.rows, num_tasks),
                    "continual_eval_points": hook.points,
                    "continual_eval_seconds": hook.seconds}
    return {}
