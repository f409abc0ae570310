"""The ``hardware`` group's schema (``hardware=auto|cpu|cuda`` and its keys), with no torch
imported: :mod:`cl_runner.config` composes it into the run config, and
:func:`cl_runner.dispatch.setup_hardware` applies it when a run starts."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from cl_runner.errors import ConfigError

__all__ = ["COMPILE_MODES", "PRECISIONS", "Device", "HardwareConfig"]

#: the values of ``hardware.precision`` (:mod:`cl_runner.training.precision`)
PRECISIONS = ("32", "bf16", "16-mixed")
#: the torch.compile modes of ``hardware.compile`` (besides false)
COMPILE_MODES = ("default", "reduce-overhead")


class Device(str, enum.Enum):
    """``hardware.device``: ``auto`` = CUDA when available, else CPU."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class HardwareConfig:
    """``hardware=auto|cpu|cuda``.

    Attributes:
        device: auto, cpu or cuda.
        num_threads: CPU threads for PyTorch (null = PyTorch's default, one per core).
        deterministic: use deterministic algorithms only (slower on CUDA; bit-reproducible).
        precision: ``32`` (float32, no autocast: the results of every run before this key),
            ``bf16`` (forward passes and the evaluation under ``torch.autocast`` in bfloat16)
            or ``16-mixed`` (float16 autocast with a gradient scaler); strategies that do
            their own backward passes outside the loop's step refuse ``16-mixed``
            (:mod:`cl_runner.training.precision`, docs/results/gpu.md). Changes results.
        compile: ``false`` (eager), ``default`` or ``reduce-overhead``: ``torch.compile`` of
            the model's forward pass in the training step (its backward too; hooks, loss,
            optimizer step and evaluation stay eager); ``reduce-overhead`` adds CUDA graphs on
            CUDA. The first steps pay the compilation (tens of seconds); numbers agree with
            eager up to float rounding, dropout masks included
            (:mod:`cl_runner.training.precision`).
    """

    name: str = "auto"
    device: Device = Device.auto
    num_threads: int | None = None
    deterministic: bool = False
    precision: str = "32"
    compile: Any = False  # false | default | reduce-overhead (Hydra reads false as a bool)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of a value out of range (no torch
        imported)."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"hardware.precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")
        if not (self.compile is False or isinstance(self.compile, str)
                and self.compile in ("false", *COMPILE_MODES)):
            raise ConfigError(f"hardware.compile must be false, {', '.join(COMPILE_MODES)}, "
                              f"got {self.compile!r}")
