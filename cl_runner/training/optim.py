"""Optimizers with the papers' per-task learning-rate decay, registered in ``OPTIMIZERS``."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cl_runner.training.schemas import OPTIMIZERS, AdamConfig, RMSpropConfig, SGDConfig


@OPTIMIZERS.register("sgd", config=SGDConfig)
def build_sgd(cfg: SGDConfig, params: Iterable[torch.nn.Parameter], task: int) -> torch.optim.SGD:
    """A fresh SGD optimizer for ``task`` (momentum buffers restart at every task, as in the
    authors' code, which builds a new optimizer per task)."""
    return torch.optim.SGD(params, lr=cfg.lr_for_task(task), momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam", config=AdamConfig)
def build_adam(cfg: AdamConfig, params: Iterable[torch.nn.Parameter], task: int) -> torch.optim.Adam:
    """A fresh Adam optimizer for ``task`` (moment estimates restart at every task)."""
    return torch.optim.Adam(params, lr=cfg.lr_for_task(task), betas=tuple(cfg.betas),
                            eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("rmsprop", config=RMSpropConfig)
def build_rmsprop(cfg: RMSpropConfig, params: Iterable[torch.nn.Parameter],
                  task: int) -> torch.optim.RMSprop:
    """A fresh RMSprop optimizer for ``task`` (its running averages restart at every task)."""
    return torch.optim.RMSprop(params, lr=cfg.lr_for_task(task), alpha=cfg.alpha, eps=cfg.eps,
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay)
