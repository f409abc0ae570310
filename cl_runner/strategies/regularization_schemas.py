"""The config schemas of the importance-weighted regularization strategies SI and MAS;
declared in :mod:`cl_runner.strategies.schemas` (no torch imported).

Each dataclass holds every default of its strategy and says where it comes from; ``[R]``
marks a value read in the paper's public code, ``[P]`` one read in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from cl_runner.checks import check_at_least_one, check_value


@dataclass
class SIConfig:
    """``strategy=si``, Synaptic Intelligence (module docstring of
    ``cl_runner/strategies/si.py``). Defaults: the authors' Split MNIST run (Zenke, Poole &
    Ganguli 2017; ganguli-lab/pathint ``fig_split_mnist/Figure split MNIST.ipynb`` [R]:
    ``PATH_INT_PROTOCOL(omega_decay='sum', xi=1e-3)``, ``cvals = [0, 1.0]``).

    Attributes:
        c: strength of the surrogate loss ``c * sum_k Omega_k (theta_k - theta~_k)^2``
            (Eq. 4; no 1/2, as the authors' ``quadratic_regularizer``).
        xi: damping of the consolidation ``Omega += omega / (Delta^2 + xi)`` (Eq. 5),
            bounding Omega where a parameter barely moved during the task.
    """

    name: str = "si"
    c: float = 1.0
    xi: float = 1e-3

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        check_value("strategy.c", self.c, ge=0)
        check_value("strategy.xi", self.xi, gt=0)


@dataclass
class MASConfig:
    """``strategy=mas``, Memory Aware Synapses (module docstring of
    ``cl_runner/strategies/mas.py``).

    Attributes:
        mas_lambda: lambda, the strength of the penalty
            ``lambda * sum_ij Omega_ij (theta_ij - theta*_ij)^2`` (Aljundi et al. 2018,
            Eq. 3; the authors' ``Weight_Regularized_SGD`` adds ``2 lambda Omega (theta -
            theta*)`` to the gradient, i.e. no 1/2). Default 1: "In object recognition it was
            set to 1" (rahafaljundi/MAS-Memory-Aware-Synapses ``MAS.py`` [R]).
        importance_samples: training examples of the task over which Omega is averaged;
            null (default) = all of them, as the authors' code (the last task's training set,
            ``reg_sets``) [R].
        importance_batch_size: examples per vectorized per-example-gradient batch (memory
            only: Omega is the mean of per-example gradient magnitudes whatever the batch).
    """

    name: str = "mas"
    mas_lambda: float = 1.0
    importance_samples: int | None = None
    importance_batch_size: int = 64

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        check_value("strategy.mas_lambda", self.mas_lambda, ge=0)
        check_at_least_one("strategy", self, "importance_samples", nullable=True)
        check_at_least_one("strategy", self, "importance_batch_size")
