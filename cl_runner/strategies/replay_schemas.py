"""The config schemas of replay strategies added after ER, DER and A-GEM (ER-ACE); declared in
:mod:`cl_runner.strategies.schemas` (no torch imported)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cl_runner.checks import check_at_least_one


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
