"""The optimizers' config schemas and their registry, ``OPTIMIZERS`` (no torch imported).

The factories live in :mod:`cl_runner.training.optim`, imported when an optimizer is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cl_runner.checks import check_value
from cl_runner.errors import ConfigError
from cl_runner.registry import Registry

#: name -> factory(cfg, params, task: int) -> torch.optim.Optimizer
OPTIMIZERS: Registry = Registry("optimizer")


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
        check_value("optimizer.lr", self.lr, gt=0)
        check_value("optimizer.momentum", self.momentum, ge=0, lt=1)
        check_value("optimizer.gamma", self.gamma, gt=0, le=1)


@dataclass
class AdamConfig:
    """``optimizer=adam``: Adam (Kingma & Ba 2015) with the same per-task learning-rate decay
    as ``optimizer=sgd``; used by the supermask presets (scores and mask coefficients).

    Attributes:
        lr: learning rate of task 1.
        betas: the moment decay rates (beta1, beta2).
        eps: denominator term.
        weight_decay: L2 coefficient (added to the gradient, as ``torch.optim.Adam``).
        gamma: per-task decay factor; task t uses ``max(lr * gamma^(t-1), lr_min)``.
        lr_min: floor of the decayed learning rate.
    """

    name: str = "adam"
    lr: float = 0.001
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    gamma: float = 1.0
    lr_min: float = 0.0

    lr_for_task = SGDConfig.lr_for_task

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of any out-of-range value."""
        check_value("optimizer.lr", self.lr, gt=0)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optimizer.betas must be two values in [0, 1), got {list(self.betas)}")
        check_value("optimizer.gamma", self.gamma, gt=0, le=1)


@dataclass
class RMSpropConfig:
    """``optimizer=rmsprop``: RMSprop (``torch.optim.RMSprop``) with the same per-task
    learning-rate decay and restart. SupSup's MNIST experiments train the scores with it
    (lr 1e-4; RAIVNLab/supsup, ``experiments/GNu/MNISTPerm``).

    Attributes:
        lr: learning rate of task 1.
        alpha: smoothing constant of the squared-gradient average (torch's default 0.99).
        eps: denominator term.
        momentum: momentum (0: none).
        weight_decay: L2 coefficient.
        gamma: per-task decay factor; task t uses ``max(lr * gamma^(t-1), lr_min)``.
        lr_min: floor of the decayed learning rate.
    """

    name: str = "rmsprop"
    lr: float = 0.0001
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0
    gamma: float = 1.0
    lr_min: float = 0.0

    lr_for_task = SGDConfig.lr_for_task

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of any out-of-range value."""
        check_value("optimizer.lr", self.lr, gt=0)
        check_value("optimizer.alpha", self.alpha, gt=0, le=1)
        check_value("optimizer.gamma", self.gamma, gt=0, le=1)


OPTIMIZERS.declare("sgd", config=SGDConfig, module="cl_runner.training.optim")
OPTIMIZERS.declare("rmsprop", config=RMSpropConfig, module="cl_runner.training.optim")
OPTIMIZERS.declare("adam", config=AdamConfig, module="cl_runner.training.optim")
