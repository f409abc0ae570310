"""The strategy interface: the training hooks of :class:`~cl_runner.training.hooks.StrategyHooks`
(called by the one loop, docs/design.md principle 1) plus what the runner reads from a strategy
(stats, checkpoints, extra accuracy matrices, parameter cost).

A strategy overrides only the hooks it needs. The loop checks once per task which hooks are
overridden and skips the others, so an unused hook costs nothing in the training step.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from cl_runner.strategies.schemas import STRATEGIES  # noqa: F401  (re-exported)
from cl_runner.training.hooks import StrategyHooks, TaskContext

__all__ = ["STRATEGIES", "Strategy", "TaskContext", "cost", "model_floats"]


class Strategy(StrategyHooks):
    """Base class: plain fine-tuning. Every hook is a no-op; the hooks and their order are
    documented in :class:`~cl_runner.training.hooks.StrategyHooks`.

    After the run the runner reads ``stats()`` and ``parameter_cost(model, T)`` into the run
    files. Every accuracy matrix comes from the one evaluation
    (:mod:`cl_runner.training.evaluate`), never from a strategy.

    Resume: at every task end the runner saves :meth:`state_dict` with the model and the
    run's generators, and a resumed run calls :meth:`load_state_dict` on a freshly built
    strategy. By default the state is every instance attribute except ``cfg`` and those
    named in :attr:`transient_attributes` (references to the run's objects, caches), so a new
    attribute is saved without new code; values must be tensors, numbers, strings, enums,
    None, objects with their own ``state_dict()`` and ``load_state_dict()`` (a teacher
    network, an episodic memory, a buffer class: saved whole, with their tensors), or
    lists/tuples/dicts of those (anything else raises at the first save, naming the
    attribute). A strategy whose state can be rebuilt more cheaply overrides both methods
    (multitask).

    Attributes:
        transient_attributes: attributes not saved: set again by the strategy's hooks before
            they are used (e.g. ``ctx.generator``, ``benchmark.to_input``, caches).
        own_backward: what backward passes the strategy runs besides the loop's step, under
            autocast but without the loop's gradient scaler (A-GEM's reference gradient, MC-SGD's
            line phase), or None. Such a strategy refuses ``hardware.precision=16-mixed``
            (:meth:`precision_problem`); passes kept in float32 (EWC's Fisher, BiC's bias
            phase) do not count.
        compile_problem: why ``hardware.compile`` cannot compile the strategy's step (its
            model's forward changes per task in a way TorchDynamo guards on), or None; such a
            strategy refuses ``hardware.compile`` (:meth:`precision_problem`'s sibling check in
            :func:`cl_runner.dispatch.build_strategy`).
    """

    transient_attributes: ClassVar[tuple[str, ...]] = ()
    own_backward: ClassVar[str | None] = None
    compile_problem: ClassVar[str | None] = None

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def state_dict(self) -> dict[str, Any]:
        """Everything the strategy carries from one task to the next (see the class docstring),
        as a dict for ``torch.save``; the values are the live objects (the runner saves them
        at once), not copies.

        Raises:
            TypeError: an attribute holds a value that cannot be saved (names it).
        """
        skip = {"cfg", *self.transient_attributes}
        state = {k: v for k, v in vars(self).items() if k not in skip}
        for key, value in state.items():
            _check_saveable(value, f"{type(self).__name__}.{key}")
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (tensors already on the run's device)."""
        vars(self).update(state)

    def precision_problem(self, precision: str) -> str | None:
        """Why the strategy cannot train under ``hardware.precision=precision``, or None.
        Default: ``16-mixed`` is refused when :attr:`own_backward` is set (float16 gradients
        without loss scaling underflow)."""
        if precision == "16-mixed" and self.own_backward is not None:
            return (f"{self.own_backward} backward passes outside the training step, without "
                    f"its gradient scaler (float16 gradients would underflow); use "
                    f"hardware.precision=bf16 or 32")
        return None

    def stats(self) -> dict[str, Any]:
        """Strategy-specific figures for ``summary.json`` (JSON-serializable)."""
        return {}

    def solutions(self, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        """The weight vectors the task just finished produced, by kind, for checkpoints.

        Called after evaluation of each task, only when ``checkpoints.enabled`` (not a training
        hook: the loop never calls it). Kinds follow docs/papers.md's notation: ``w_hat``
        (continual minimum), ``w_bar`` (MC-SGD solution), ``w_star`` (multitask minimum).

        Returns:
            kind -> ``state_dict`` (name -> tensor, as ``model.state_dict()``). Default:
            ``{"w_hat": model.state_dict()}``: the evaluated model is the continual minimum.
        """
        return {"w_hat": model.state_dict()}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """What the strategy stores to solve the task sequence, for ``summary.json``, read
        after the run from its state, in float32 equivalents: bytes as stored / 4 (a bit
        counts 1/32, a uint8 pixel 1/4, an int64 label or task id 2, a float32 value 1).

        Keys: ``shared_floats``: the model's parameters (shared by all tasks);
        ``task_floats``: per task k, what is stored for task k alone (episodic-memory
        examples of task k, EWC's Fisher and anchor of task k, a task's mask);
        ``state_floats``: further strategy state not tied to one task (MC-SGD's anchor
        weights, online EWC's running Fisher and anchor); ``definition``: these rules for
        this strategy, in words. Default (plain fine-tuning): nothing beyond the model.

        Returns:
            ``{"shared_floats": int, "task_floats": [float] * num_tasks,
            "state_floats": float, "definition": str}``.
        """
        return cost(model, [0.0] * num_tasks, 0.0,
                    "task_floats: nothing stored per task; state_floats: none")


def model_floats(model: nn.Module) -> int:
    """Number of parameters of ``model`` (float32 values)."""
    return sum(p.numel() for p in model.parameters())


def cost(model: nn.Module, task_floats: list[float], state_floats: float,
         definition: str) -> dict[str, Any]:
    """A :meth:`Strategy.parameter_cost` dict: ``shared_floats`` = the model's parameters,
    the given per-task and state counts, and ``definition`` prefixed with the common rules."""
    return {"shared_floats": model_floats(model), "task_floats": list(task_floats),
            "state_floats": float(state_floats),
            "definition": "float32 equivalents = bytes as stored / 4 (uint8 pixel 1/4, int64 "
                          "label or task id 2); shared_floats: model parameters; " + definition}


_SAVEABLE_LEAVES = (torch.Tensor, int, float, str, bool, type(None), enum.Enum)


def has_own_state(value: Any) -> bool:
    """True when ``value`` carries its state itself: it has callable ``state_dict`` and
    ``load_state_dict`` (``nn.Module``, an episodic memory, a buffer class)."""
    return callable(getattr(value, "state_dict", None)) and callable(
        getattr(value, "load_state_dict", None))


def _check_saveable(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` is made of :data:`_SAVEABLE_LEAVES` and objects
    with their own state (:func:`has_own_state`) in lists, tuples and dicts (what a resume
    state may hold: no generators, functions or plain objects)."""
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_saveable(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_saveable(item, f"{where}[{k!r}]")
    elif not isinstance(value, _SAVEABLE_LEAVES) and not has_own_state(value):
        raise TypeError(f"{where} holds a {type(value).__name__}, which a resume state cannot "
                        f"hold; list the attribute in transient_attributes (and set it again "
                        f"in a hook) or override state_dict/load_state_dict")
