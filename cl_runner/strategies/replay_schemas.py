"""The config schemas of replay strategies added after ER, DER and A-GEM (ER-ACE, iCaRL);
declared in :mod:`cl_runner.strategies.schemas` (no torch imported)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cl_runner.checks import check_at_least_one, check_value
from cl_runner.errors import ConfigError


class ACEVariant(str, enum.Enum):
    """Which logits each of ER-ACE's two cross-entropies ranges over (``strategy.variant``)."""

    #: incoming batch: the classes present in it; replay batch: the classes seen so far
    #: (Caccia et al. 2022, Sec. 4, the asymmetric loss as recalled from the paper: its text
    #: was not read for this module; Avalanche's ACECriterion also keeps only the present
    #: classes for the incoming batch)
    paper = "paper"
    #: incoming batch: the classes present in it and those not seen yet; replay batch: every
    #: output (the authors' code, pclucas14/AML ``methods/er_ace.py`` and ``methods/er.py``,
    #: and Mammoth's ``models/er_ace.py``)
    authors = "authors"


@dataclass
class ERACEConfig:
    """``strategy=er_ace`` (module docstring of ``cl_runner/strategies/er_ace.py``).

    Attributes:
        memory_size: total reservoir buffer size (examples), shared by all tasks; default
            200, ER's budget (``strategy=er``), so the two compare at equal memory.
        replay_batch_size: buffer examples per step; ``None`` (default) = the incoming
            batch's size, as the authors' runs (``buffer_batch_size`` = ``batch_size`` = 10).
        variant: ``paper`` (default) or ``authors``; see :class:`ACEVariant`.
    """

    name: str = "er_ace"
    memory_size: int = 200
    replay_batch_size: int | None = None
    variant: ACEVariant = ACEVariant.paper

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        check_at_least_one("strategy", self, "memory_size")
        check_at_least_one("strategy", self, "replay_batch_size", nullable=True)


class ICaRLUnits(str, enum.Enum):
    """Which output units iCaRL's binary cross-entropy covers (``strategy.units``)."""

    #: the classes seen so far, the task's new classes included (Rebuffi et al. 2017, Alg. 3;
    #: van de Ven & Tolias 2019's code: the "active classes" so far)
    seen = "seen"
    #: every output: classes not seen yet get target 0 (the authors' Theano code, all 100
    #: units; Mammoth's ``models/icarl.py`` ``get_loss``: one-hot targets over all
    #: ``num_classes`` outputs, the old network's sigmoid on the past classes)
    all = "all"


@dataclass
class ICaRLConfig:
    """``strategy=icarl`` (module docstring of ``cl_runner/strategies/icarl.py``).

    Attributes:
        memory_size: K, the total number of exemplars, split evenly over the exemplar sets
            (one per class; on domain-incremental benchmarks one per class label and task).
            Default 2000: the paper's CIFAR-100 value (Rebuffi et al. 2017, Sec. 4), kept for
            MNIST too (ER's budget of 200 is ``strategy.memory_size=200``).
        feature_batch_size: examples per forward pass when extracting features for herding
            and the class means (memory only, no effect on the numbers).
        units: ``seen`` (default, the paper's Alg. 3) or ``all`` (the authors' and Mammoth's
            code; the ``seq_mnist_icarl_*`` presets); see :class:`ICaRLUnits`.
        distill_temperature: T of the old classes' targets ``sigmoid(z_old / T)``; default 1,
            the paper's (Alg. 3), the authors' and Mammoth's plain sigmoid; van de Ven's code
            divides by its distillation temperature, 2 by default (``models/classifier.py``:
            ``torch.sigmoid(scores / self.KD_temp)``, read at e6d795a): ``split_mnist_icarl``.
    """

    name: str = "icarl"
    memory_size: int = 2000
    feature_batch_size: int = 512
    units: ICaRLUnits = ICaRLUnits.seen
    distill_temperature: float = 1.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        if self.memory_size < 1:
            raise ConfigError(f"strategy.memory_size must be >= 1, got {self.memory_size}")
        check_at_least_one("strategy", self, "feature_batch_size")
        check_value("strategy.distill_temperature", self.distill_temperature, gt=0)
