"""Config schemas of the two class-incremental bias-correction strategies, ``wa`` (Weight
Aligning, Zhao et al., CVPR 2020) and ``bic`` (Bias Correction, Wu et al., CVPR 2019); no torch
imported. Declared in :mod:`cl_runner.strategies.schemas`; the algorithms are
:mod:`cl_runner.strategies.wa` and :mod:`cl_runner.strategies.bic` (module docstrings: the
papers, sections and equations, and what this runner does differently). [R]: read in the
authors' or PyCIL's code; [M]: a section number recalled from the paper, not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cl_runner.checks import check_at_least_one, check_value

#: why both refuse the domain-incremental scenario (``unsupported_scenarios``)
NO_NEW_CLASSES = (
    "it corrects the bias of the output layer towards the classes of the newest task against "
    "the old classes, and on a domain-incremental benchmark every task has the same classes "
    "(no class is new or old: the correction is undefined)")


@dataclass
class WAConfig:
    """``strategy=wa`` (module docstring of ``cl_runner/strategies/wa.py``).

    Attributes:
        memory_size: K, the total number of exemplars (herding selection, split evenly over the
            classes seen). Default 2000: the protocol WA follows on CIFAR-100 (iCaRL's, Rebuffi
            et al. 2017, Sec. 4; WA Sec. 4.1 [M]), as PyCIL's ``memory_size`` [R].
        temperature: T of the distillation's softened probabilities (WA Sec. 3.2 [M], following
            Hinton et al.; T = 2, as PyCIL's ``T``).
        clip_weights: clip the output layer's weights to >= 0 after every optimizer step (WA
            Sec. 3.3 [M]; see the module docstring). Default true, the paper's method.
        feature_batch_size: examples per forward pass when extracting features for herding
            (memory only, no effect on the numbers).
    """

    name: str = "wa"
    memory_size: int = 2000
    temperature: float = 2.0
    clip_weights: bool = True
    feature_batch_size: int = 512

    unsupported_scenarios: ClassVar[dict[str, str]] = {"domain_incremental": NO_NEW_CLASSES}

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        check_at_least_one("strategy", self, "memory_size", "feature_batch_size")
        check_value("strategy.temperature", self.temperature, gt=0)


@dataclass
class BiCConfig:
    """``strategy=bic`` (module docstring of ``cl_runner/strategies/bic.py``).

    Attributes:
        memory_size: K, the total number of exemplars (herding, split evenly over the classes
            seen). Default 2000: BiC's CIFAR-100 setting (Wu et al. 2019, Sec. 5.1 [M], iCaRL's
            protocol), as PyCIL's ``memory_size`` [R].
        temperature: T of the distillation (Wu et al. Sec. 4.1 [M]; the authors' code ``T = 2``).
        val_fraction: share of each old class's exemplars held out as the validation set of
            the bias-correction stage (the rest trains the network); each new class holds out
            as many of its training images (the validation set is balanced). Default 0.1: the
            paper's 9:1 train/validation split of the exemplars (Sec. 5.1 [M]; the authors' code
            ``nb_val = 0.1``, PyCIL ``split_ratio = 0.1``).
        bias_epochs: passes over the validation set of the bias-correction stage (this
            runner's choice: PyCIL runs 250 on CIFAR-100, the authors' ImageNet code twice the
            classifier's schedule; the stage trains 2 numbers on logits computed once, so a
            pass costs microseconds).
        bias_lr: SGD learning rate of the two correction parameters (PyCIL and the authors'
            code: 0.1, decayed by steps; here constant).
        bias_momentum: its momentum (the authors' code: 0.9).
        bias_batch_size: validation examples per step of the correction stage.
        feature_batch_size: examples per forward pass for herding and for the validation
            logits (memory only).
    """

    name: str = "bic"
    memory_size: int = 2000
    temperature: float = 2.0
    val_fraction: float = 0.1
    bias_epochs: int = 200
    bias_lr: float = 0.1
    bias_momentum: float = 0.9
    bias_batch_size: int = 128
    feature_batch_size: int = 512

    unsupported_scenarios: ClassVar[dict[str, str]] = {"domain_incremental": NO_NEW_CLASSES}

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        check_at_least_one("strategy", self, "memory_size", "bias_epochs", "bias_batch_size",
                           "feature_batch_size")
        check_value("strategy.temperature", self.temperature, gt=0)
        check_value("strategy.val_fraction", self.val_fraction, gt=0, lt=1)
        check_value("strategy.bias_lr", self.bias_lr, gt=0)
        check_value("strategy.bias_momentum", self.bias_momentum, ge=0, lt=1)
