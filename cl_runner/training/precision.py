"""Numerical precision of the training step and the evaluation (``hardware.precision``), and
the compiled forward pass of the step (``hardware.compile``); the keys and their defaults:
``HardwareConfig`` in cl_runner/hardware_config.py.

The precision:

- ``32``: float32 everywhere, no autocast (the default; the step is the one it always was).
- ``bf16``: the forward computation of every step runs under ``torch.autocast(device_type,
  dtype=torch.bfloat16)`` (matrix products in bfloat16, reductions and the loss in float32,
  as autocast's op lists decide); weights, gradients and optimizer state stay float32. No
  gradient scaling (bfloat16 has float32's exponent range).
- ``16-mixed``: the same under ``dtype=torch.float16``, with a ``torch.amp.GradScaler``: the
  loss is scaled before ``backward``, the gradients are unscaled before a strategy's
  ``after_backward`` sees them and before the optimizer step, which is skipped on an
  overflow (one host sync per step: the scaler's check for infinities). The scaler, like the
  optimizer, is made anew for every task (so a run resumed at a task boundary continues
  exactly as an uninterrupted one).

:class:`Precision` is what the loop, the evaluation and strategies' own phases share
(``TaskContext.precision``): ``with precision.autocast(): ...`` around a forward pass.

Compilation (:func:`compiled`): ``false`` (eager, the default), ``default`` or
``reduce-overhead`` (``torch.compile`` modes; the latter adds CUDA graphs on CUDA, for the
batch-10 MLP steps whose time on a GPU is kernel launches). Only the model's forward pass in the
loop's step is compiled (and its backward, by AOTAutograd): the strategy's hooks, the loss,
the optimizer step, strategies' own phases and the evaluation stay eager, so a host sync in a
hook (GEM's QP) or a batch whose size changes (replay) is outside the compiled graph (a new
batch size costs one recompilation, then dynamic shapes). Dropout masks are drawn with eager's
generator (Inductor's ``fallback_random``), so a compiled run gives the eager run's numbers up to
float rounding, dropout included (tests/test_compile.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

#: the values of ``hardware.precision``, and the autocast dtype of each (None: no autocast)
DTYPES: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16,
                                         "16-mixed": torch.float16}

#: the values of ``hardware.compile`` and the ``torch.compile`` mode of each (None: eager)
#: (``hardware.compile=false`` composes as the bool False)
COMPILE_MODES: dict[str | bool, str | None] = {False: None, "false": None, "default": "default",
                                               "reduce-overhead": "reduce-overhead"}


class Precision:
    """The precision of a run's forward passes on one device type.

    Args:
        name: ``"32"``, ``"bf16"`` or ``"16-mixed"`` (:data:`DTYPES`).
        device_type: ``"cpu"`` or ``"cuda"`` (``torch.device.type`` of the run).

    Raises:
        ValueError: an unknown ``name``.
    """

    def __init__(self, name: str = "32", device_type: str = "cpu") -> None:
        if name not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {name!r}")
        self.name = name
        self.device_type = device_type
        self.dtype = DTYPES[name]

    @property
    def enabled(self) -> bool:
        """Whether forward passes run under autocast (any precision but ``32``)."""
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        """A context running its forward passes at this precision: ``torch.autocast`` of the
        device type and dtype, or a no-op for ``32``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """A new gradient scaler for ``16-mixed`` (one per task, as the optimizer), else
        None."""
        return torch.amp.GradScaler(self.device_type) if self.name == "16-mixed" else None


def compiled(model: nn.Module, mode: str | bool) -> Callable[..., torch.Tensor]:
    """``model``'s forward for the training step: ``model`` itself for ``mode`` False (or
    ``"false"``), else ``torch.compile(model, mode=...)`` (TorchDynamo + Inductor; its backward compiled too, by
    AOTAutograd; ``reduce-overhead`` adds CUDA graphs on CUDA, nothing on the CPU). The
    compiled module shares ``model``'s parameters and buffers; only the loop's forward pass
    goes through it (strategies' own passes and the evaluation call ``model`` eagerly).

    Raises:
        ValueError: an unknown ``mode`` (:data:`COMPILE_MODES`).
    """
    if isinstance(mode, int) and mode is not False or mode not in COMPILE_MODES:
        raise ValueError(f"compile must be false, default or reduce-overhead, got {mode!r}")
    if COMPILE_MODES[mode] is None:
        return model
    # options instead of mode (torch takes one of them): reduce-overhead is Inductor's CUDA
    # graphs; fallback_random draws dropout masks with eager's generator, so a compiled run
    # with dropout follows the eager one (Inductor's own RNG would draw other masks)
    return torch.compile(model, options={"fallback_random": True,
                                         "triton.cudagraphs": mode == "reduce-overhead"})
