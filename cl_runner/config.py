"""Run-level config schemas and their registration in Hydra's ConfigStore.

Every config group option is validated against a dataclass: the run-level ones below, and
one per registered component (benchmark, model, strategy, optimizer), stored in the group
``schema/<kind>`` so that each ``conf/<kind>/<name>.yaml`` extends its own schema. Unknown
keys, wrong types and unknown options therefore fail while Hydra composes the config, before
any data is loaded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from cl_runner.data import BENCHMARKS
from cl_runner.models import MODELS
from cl_runner.strategies import STRATEGIES
from cl_runner.training.optim import OPTIMIZERS

REGISTRIES = (BENCHMARKS, MODELS, STRATEGIES, OPTIMIZERS)


@dataclass
class DataConfig:
    """``data.*``.

    Attributes:
        root: folder holding the datasets in torchvision's layout (``MNIST/raw/...``); default
            the ``CL_RUNNER_DATA`` environment variable, else ``data/`` in the working folder.
        download: try to download missing datasets (needs a network).
    """

    root: str = "${oc.env:CL_RUNNER_DATA,data}"
    download: bool = True


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
    """

    name: str = "auto"
    device: Device = Device.auto
    num_threads: int | None = None
    deterministic: bool = False


@dataclass
class RunConfig:
    """The whole run config (``conf/config.yaml`` and its groups).

    Attributes:
        seed: seeds model initialization, dropout, shuffles, subsets, memories, permutations.
        progress: show the rich progress bar.
        force: run even when the run folder already holds a complete result for the same
            config (by default such a job is skipped, so a relaunched sweep only runs what is
            missing; see ``cl_runner/sweep.py``).
    """

    seed: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    benchmark: Any = MISSING
    model: Any = MISSING
    strategy: Any = MISSING
    optimizer: Any = MISSING
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    progress: bool = True
    force: bool = False


def register_configs() -> None:
    """Store the run schema and one schema per registered component in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for registry in REGISTRIES:
        for entry in registry:
            cs.store(group=f"schema/{registry.kind}", name=entry.name, node=entry.config)
