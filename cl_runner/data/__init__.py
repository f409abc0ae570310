"""Dataset sources and continual-learning benchmarks (registered in ``BENCHMARKS``).

``BENCHMARKS`` and the config schemas (:mod:`cl_runner.data.schemas`) import no torch; a
benchmark's module is imported when it is built. ``Benchmark`` is imported on first use.
"""

from __future__ import annotations

from typing import Any

from cl_runner.data.schemas import BENCHMARKS

__all__ = ["BENCHMARKS", "Benchmark"]


def __getattr__(name: str) -> Any:
    if name == "Benchmark":  # the base class imports torch: only when asked for
        from cl_runner.data.benchmark import Benchmark

        return Benchmark
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
