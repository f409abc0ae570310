"""Runs that survive: the resume state written at every task end, its reading on a restart, and
a clean stop on SIGINT / SIGTERM.

The resume state (``resume.pt`` in the run folder, one file, replaced atomically at every task
end) holds everything the rest of the run depends on: the model's ``state_dict``, the
strategy's :meth:`~cl_runner.strategies.base.Strategy.state_dict`, the run's random
generators (its CPU generator for shuffles and strategies' choices, PyTorch's global CPU and
CUDA generators for dropout), the rows measured so far (:class:`SequenceResult`), the
runner hooks' states (probes) and the resolved config. A run started into a folder holding one
(same resolved config) continues with the next task and ends with files byte-identical to an
uninterrupted run; the file is removed when the run completes.

Interruption: :class:`InterruptHook` turns the first SIGINT or SIGTERM into
:class:`RunInterrupted` at the next step boundary (a second signal stops at once); the rows of
the finished tasks and their resume state are on disk already, so the task in progress is the
only work lost. The file is trusted input (written by the runner itself): it is read with
``torch.load(weights_only=False)``.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cl_runner.errors import ConfigError, RunInterrupted  # noqa: F401  (RunInterrupted: re-exported)
from cl_runner.results.checkpoints import atomic_torch_save
from cl_runner.results.run_folder import (
    RESUME_FILE,
    RunFolderError,
    comparable_config,
    differing_keys,
)
from cl_runner.strategies.base import Strategy
from cl_runner.training.hooks import RunnerHook
from cl_runner.training.result import SequenceResult

#: format of the file; a file of another format is refused (start over with resume=false)
FORMAT = 1


class ResumeMismatchError(RunFolderError):
    """The run folder's resume state comes from a different resolved config (a refusal:
    raised before anything is written, the folder left as it was)."""


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """The run's generator and PyTorch's global generators (CPU, and CUDA when initialized)."""
    states: dict[str, Any] = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_states` returned."""
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Attempts:
    """Every attempt (process) of one run, for ``summary.json``'s ``attempts``: its
    ``started_at`` (ISO time), ``resumed_after_task`` (None for the first), and
    ``wall_time_seconds``, ``continual_eval_points`` and ``continual_eval_seconds`` up to its
    last resume state (the work after it is redone by the next attempt). The earlier attempts
    travel in the resume state (:class:`ResumeHook`).

    Args:
        before: the earlier attempts (the resume state's ``attempts``; ``[]`` for a new run).
        started_at: this attempt's start, ISO 8601.
        resumed_after_task: the task this attempt resumed after (None: a new run).
        t0: this attempt's start on the ``time.perf_counter`` clock (default: now).
    """

    def __init__(self, before: Sequence[Mapping[str, Any]], started_at: str,
                 resumed_after_task: int | None, t0: float | None = None) -> None:
        self.before = [dict(a) for a in before]
        self.t0 = time.perf_counter() if t0 is None else t0
        self.current: dict[str, Any] = {"started_at": started_at,
                                        "resumed_after_task": resumed_after_task}
        #: the run's continual-evaluation hook (``points`` and ``seconds``), when there is one
        self.continual_eval: Any = None

    def records(self) -> list[dict[str, Any]]:
        """Every attempt's record, this one's measured now."""
        now = {**self.current, "wall_time_seconds": time.perf_counter() - self.t0}
        if self.continual_eval is not None:
            now.update(continual_eval_points=self.continual_eval.points,
                       continual_eval_seconds=self.continual_eval.seconds)
        return [*self.before, now]

    @staticmethod
    def totals(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``summary.json`` fields over all attempts: ``attempts``, ``started_at`` (the
        first's), ``wall_time_seconds`` and the continual-evaluation counts (sums)."""
        out: dict[str, Any] = {"attempts": list(records),
                               "started_at": records[0]["started_at"],
                               "wall_time_seconds": sum(r["wall_time_seconds"] for r in records)}
        for key in ("continual_eval_points", "continual_eval_seconds"):
            if key in records[-1]:
                out[key] = sum(r.get(key, 0) for r in records)
        return out


class ResumeHook(RunnerHook):
    """Writes the resume state after every task (after the other hooks, so their files and
    states are those of the finished task).

    Args:
        out_dir: the run folder.
        config: the comparable resolved config (stored, compared on resume).
        hooks: the runner hooks whose ``state_dict`` is saved, by name.
        attempts: the run's attempts so far, saved as ``attempts`` (:class:`Attempts`).
    """

    def __init__(self, out_dir: str | Path, config: Mapping[str, Any], model: nn.Module,
                 strategy: Strategy, generator: torch.Generator,
                 hooks: Mapping[str, RunnerHook], attempts: Attempts | None = None) -> None:
        self.path = Path(out_dir) / RESUME_FILE
        self.config = dict(config)
        self.model, self.strategy, self.generator = model, strategy, generator
        self.hooks = dict(hooks)
        self.attempts = attempts
        self.bytes_written: list[int] = []  # per task, bytes of resume.pt
        self.seconds_written: list[float] = []  # per task, seconds to build and write it

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        t0 = time.perf_counter()
        state = {"format": FORMAT, "config": self.config, "task": task,
                 "model": self.model.state_dict(), "strategy": self.strategy.state_dict(),
                 "rng": rng_states(self.generator), "result": dataclasses.asdict(result),
                 "hooks": {name: hook.state_dict() for name, hook in self.hooks.items()},
                 "attempts": self.attempts.records() if self.attempts is not None else []}
        self.bytes_written.append(atomic_torch_save(state, self.path))
        self.seconds_written.append(time.perf_counter() - t0)


def read_resume_state(out_dir: str | Path, config: Mapping[str, Any],
                      device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The resume state in ``out_dir`` for ``config``, or None when there is none.

    Args:
        config: the comparable resolved config of the run about to start.
        device: where its tensors are loaded.

    Raises:
        ResumeMismatchError: the state was written by a run of another config (names the
            differing keys) or in another format.
        RunFolderError: the file cannot be read, or its model holds NaN or infinite weights
            (names it; ``resume=false`` starts over). Both are refusals: nothing is written.
    """
    path = Path(out_dir) / RESUME_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise RunFolderError(f"cannot read the resume state {path}: {type(exc).__name__}: {exc}; "
                          f"resume=false starts the run over") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ResumeMismatchError(f"{path} is not a resume state of this version of cl_runner; "
                                  f"resume=false starts the run over")
    # normalized as the caller's: keys added to the config since the state was written
    # compare at their schema defaults (config.fill_schema_defaults)
    keys = differing_keys(comparable_config(state["config"]), dict(config))
    if keys:
        raise ResumeMismatchError(
            f"{path} comes from a run with a different config (differs at: {', '.join(keys)}); "
            f"use the same overrides to resume it, another run folder for a new run, or "
            f"resume=false to start this one over")
    model = state.get("model")
    if isinstance(model, Mapping) and not all(
            bool(torch.isfinite(v).all()) for v in model.values()
            if isinstance(v, torch.Tensor) and v.is_floating_point()):
        raise RunFolderError(
            f"{path} holds non-finite weights (saved after a diverged task by an older "
            f"cl_runner) and cannot be resumed; resume=false starts the run over")
    return state


def restore(state: Mapping[str, Any], model: nn.Module, strategy: Strategy,
            generator: torch.Generator, hooks: Mapping[str, RunnerHook]) -> SequenceResult:
    """Put model, strategy, generators and hooks back to the end of task ``state["task"]``.

    A model whose structure grows with the tasks (supermask score slots, ImpressLearn
    coefficients) grows back to the state's size in its own ``load_state_dict``
    (:meth:`~cl_runner.models.supermask.SupermaskNet.load_state_dict`).

    Returns:
        The rows of the finished tasks, to pass to ``train_sequence(start=...)``.
    """
    strategy.load_state_dict(state["strategy"])
    model.load_state_dict(state["model"])
    set_rng_states(state["rng"], generator)
    for name, hook in hooks.items():
        if name in state["hooks"]:
            hook.load_state_dict(state["hooks"][name])
    return SequenceResult(**state["result"])


class InterruptHook(RunnerHook):
    """Stops the run cleanly on SIGINT or SIGTERM: the handler only sets a flag, and the next
    step boundary raises :class:`RunInterrupted` (a flag test per step, no sync). A second
    signal raises at once (``KeyboardInterrupt``). Use as a context manager around training;
    the previous handlers come back on exit. Outside the main thread (where Python cannot
    install handlers) it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.tasks_done = 0  # set by the runner for a resumed run, then counted here
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
        self.signum = signum

    def __enter__(self) -> InterruptHook:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def check(self) -> None:
        """Raise :class:`RunInterrupted` when a signal arrived."""
        if self.signum is not None:
            raise RunInterrupted(self.signum, self.tasks_done)

    def after_step(self) -> None:
        if self.signum is not None:
            raise RunInterrupted(self.signum, self.tasks_done)

    def before_task(self, ctx: Any) -> None:
        self.check()

    def after_evaluation(self, task: int, result: SequenceResult) -> None:
        self.tasks_done = task


def named_hooks(hooks: Sequence[RunnerHook]) -> dict[str, RunnerHook]:
    """The hooks that carry state (override ``state_dict``), by class name."""
    return {type(h).__name__: h for h in hooks
            if type(h).state_dict is not RunnerHook.state_dict}
