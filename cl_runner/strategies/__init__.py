"""Continual-learning strategies, registered by name in ``STRATEGIES``.

Adding a strategy: one file here, its config dataclass and ``STRATEGIES.declare`` line in
:mod:`cl_runner.strategies.schemas`, and one ``conf/strategy/<name>.yaml``. ``STRATEGIES``
and the schemas import no torch; a strategy's module is imported when it is built, and
``Strategy`` / ``TaskContext`` on first use.
"""

from __future__ import annotations

from typing import Any

from cl_runner.strategies.schemas import STRATEGIES

__all__ = ["STRATEGIES", "Strategy", "TaskContext"]


def __getattr__(name: str) -> Any:
    if name in ("Strategy", "TaskContext"):  # they import torch: only when asked for
        from cl_runner.strategies import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
