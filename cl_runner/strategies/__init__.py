"""Continual-learning strategies, registered by name in ``STRATEGIES``.

Adding a strategy: one file here, one ``conf/strategy/<name>.yaml``, one import line below.
"""

from cl_runner.strategies import (
    agem,  # noqa: F401
    er,  # noqa: F401
    ewc,  # noqa: F401
    impresslearn,  # noqa: F401
    mcsgd,  # noqa: F401
    multitask,  # noqa: F401
    naive,  # noqa: F401
    stable_sgd,  # noqa: F401
    supsup,  # noqa: F401
)
from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext

__all__ = ["STRATEGIES", "Strategy", "TaskContext"]
