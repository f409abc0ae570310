"""Optimizers with the papers' per-task learning-rate decay, registered in ``OPTIMIZERS``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from cl_runner.errors import ConfigError
from cl_runner.registry import Registry

#: name -> factory(cfg, params, task: int) -> torch.optim.Optimizer
OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")


@dataclass
class SGDConfig:
    """``optimizer=sgd``: SGD with momentum and a per-task learning-rate decay.

    Attributes:
        lr: learning rate of task 1.
        momentum: heavy-ball momentum (the papers: 0.8).
        weight_decay: L2 coefficient.
        gamma: per-task decay factor; task t uses ``max(lr * gamma^(t-1), lr_min)``
            (Mirzadeh et al. 2020, Section 4, "learning rate decay").
        lr_min: floor of the decayed learning rate.
    """

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.8
    weight_decay: float = 0.0
    gamma: float = 1.0
    lr_min: float = 0.0

    def lr_for_task(self, task: int) -> float:
        """Learning rate of 1-based ``task``: ``max(lr * gamma**(task-1), lr_min)``."""
        return max(self.lr * self.gamma ** (task - 1), self.lr_min)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of any out-of-range value."""
        if self.lr <= 0:
            raise ConfigError(f"optimizer.lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optimizer.momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"optimizer.gamma must be in (0, 1], got {self.gamma}")


@OPTIMIZERS.register("sgd", config=SGDConfig)
def build_sgd(cfg: SGDConfig, params: Iterable[torch.nn.Parameter], task: int) -> torch.optim.SGD:
    """A fresh SGD optimizer for ``task`` (momentum buffers restart at every task, as in the
    authors' code, which builds a new optimizer per task)."""
    return torch.optim.SGD(params, lr=cfg.lr_for_task(task), momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)
