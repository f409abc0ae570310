"""Dataset sources and continual-learning benchmarks (registered in ``BENCHMARKS``)."""

from cl_runner.data import (
    cifar,  # noqa: F401  (registers split_cifar100)
    mnist,  # noqa: F401  (registers rotated_mnist, permuted_mnist)
)
from cl_runner.data.benchmark import BENCHMARKS, Benchmark

__all__ = ["BENCHMARKS", "Benchmark"]
