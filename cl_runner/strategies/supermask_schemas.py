"""The config schemas of the supermask strategies (SupSup, ImpressLearn) and their task
inference settings; declared in :mod:`cl_runner.strategies.schemas` (no torch imported)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from cl_runner.errors import ConfigError


class InferenceMethod(str, enum.Enum):
    """``strategy.inference`` (:mod:`cl_runner.strategies.task_inference`)."""

    one_shot = "one_shot"  # SupSup Sec. 3.3: one gradient step at alpha = 1/K
    binary = "binary"  # SupSup's Binary: halve the candidates by the gradient, ~log2 K steps
    exhaustive = "exhaustive"  # every mask alone, lowest objective (an oracle, not a paper method)


class InferenceObjective(str, enum.Enum):
    """``strategy.inference_objective`` (:mod:`cl_runner.strategies.task_inference`)."""

    H = "H"  # output entropy
    G = "G"  # logsumexp of the outputs, gradient through the superfluous neurons only


class WrongInference(str, enum.Enum):
    """``strategy.wrong_inference``: how a batch whose task was inferred wrong is scored."""

    classify = "classify"  # classified with the inferred task's mask (this project's first rule)
    zero = "zero"  # scores 0 (SupSup's code with unshared labels, GNu)


@dataclass
class SupermaskStrategyConfig:
    """Keys shared by the supermask strategies.

    Attributes:
        task_inference: infer the task of each test batch. Where the benchmark does not give
            the task id at test time (Rotated/Permuted MNIST) this is the headline accuracy
            (``accuracy_matrix.csv``; the task-given one beside it:
            ``accuracy_matrix_task_il.csv``) and it must be true; on a task-incremental
            benchmark a diagnostic (``accuracy_matrix_task_inferred.csv``, tasks learned so
            far). ``accuracy_matrix_task_inference.csv``: fraction of examples whose task was
            inferred right. One-shot costs about three forward passes per test batch.
        inference_batch_size: test examples per inferred batch (one task per batch; 1 =
            single-image inference).
        inference: ``one_shot`` (default), ``binary`` or ``exhaustive``.
        inference_objective: ``H`` (default, entropy) or ``G`` (needs ``model.output_size``).
        inference_images: the objective reads the first N images of each batch (the
            authors' ``data_to_repeat``, 1 in their runs); null (default) = the whole batch.
        wrong_inference: ``classify`` (default) or ``zero`` (the paper's rule).
        inference_shuffle: false (default): each test set is cut into inference batches in
            its file order; true: in a fixed random order per test set (seeded by the task
            id: the same batches at every task end and in every run), as the SupSup authors'
            shuffled test loaders. Batches in file order group similar writers, which on
            Rotated MNIST look like a neighbouring rotation (docs/results/supermasks.md).
    """

    needs_supermask_model: ClassVar[bool] = True
    #: scenario (stored value) -> why the strategy cannot run in it; checked by
    #: :func:`cl_runner.dispatch.check_strategy_fits_scenario` before any data are read
    unsupported_scenarios: ClassVar[dict[str, str]] = {
        "class_incremental": (
            "its accuracy matrix scores each task with that task's own supermask, i.e. it needs "
            "the task id at test time, which class-incremental evaluation does not give; "
            "without it, it would need task inference (strategy.task_inference) and then a head "
            "per task to classify among that task's classes, while the class-incremental head "
            "spans every class seen"),
    }

    task_inference: bool = True
    inference_batch_size: int = 128
    inference: InferenceMethod = InferenceMethod.one_shot
    inference_objective: InferenceObjective = InferenceObjective.H
    inference_images: int | None = None
    wrong_inference: WrongInference = WrongInference.classify
    inference_shuffle: bool = False

    def scenario_problem(self, scenario: str) -> str | None:
        """Why this config cannot run in ``scenario`` (a scenario value), or None. Without
        ``task_inference`` the strategy has no accuracy without the task id, and only a
        task-incremental benchmark gives it at test time (the headline there); elsewhere the
        headline is the task-inferred accuracy (cl_runner/training/evaluate.py)."""
        if scenario != "task_incremental" and not self.task_inference:
            return ("strategy.task_inference=false leaves no accuracy without the task id, which "
                    "this scenario does not give at test time (its accuracy matrix is the "
                    "task-inferred one; the task-given one is written beside it as "
                    "accuracy_matrix_task_il.csv); set strategy.task_inference=true, or use "
                    "benchmark.scenario=task on a split benchmark")
        return None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of an out-of-range value."""
        if self.inference_batch_size < 1:
            raise ConfigError(f"strategy.inference_batch_size must be >= 1, "
                              f"got {self.inference_batch_size}")
        if self.inference_images is not None and self.inference_images < 1:
            raise ConfigError(f"strategy.inference_images must be >= 1 or null, "
                              f"got {self.inference_images}")


@dataclass
class SupSupConfig(SupermaskStrategyConfig):
    """``strategy=supsup``: see the module docstring and :class:`SupermaskStrategyConfig`."""

    name: str = "supsup"


class Basis(str, enum.Enum):
    """How the B basis masks are obtained (``strategy.basis``)."""

    heterogeneous = "heterogeneous"
    homogeneous = "homogeneous"
    random = "random"


class Combine(str, enum.Enum):
    """How the coefficients make a task's mask (``strategy.combine``)."""

    superposition = "superposition"
    topk = "topk"


class CoefficientScope(str, enum.Enum):
    """One coefficient vector per layer or one for the whole network."""

    layer = "layer"
    network = "network"


@dataclass
class ImpressLearnConfig(SupermaskStrategyConfig):
    """``strategy=impresslearn`` (module docstring).

    Attributes:
        basis_size: B, the number of basis masks.
        basis: ``heterogeneous``, ``homogeneous`` or ``random``.
        combine: ``superposition`` or ``topk``.
        coefficients: ``layer`` (B per masked layer) or ``network`` (B in all).
        coefficient_init: initial value of every coefficient; null = 1/B.
        coefficient_lr: learning rate of the coefficient tasks (a parameter group of the
            run's optimizer, without its per-task decay); null = the optimizer's. Default
            0.01, own choice: measured on Rotated MNIST task 4 (B=3), 0.01 gave 89.5%, 0.001
            86.2%.
    """

    name: str = "impresslearn"
    basis_size: int = 5
    basis: Basis = Basis.heterogeneous
    combine: Combine = Combine.superposition
    coefficients: CoefficientScope = CoefficientScope.layer
    coefficient_init: float | None = None
    coefficient_lr: float | None = 0.01

    def validate(self) -> None:
        super().validate()
        if self.basis_size < 1:
            raise ConfigError(f"strategy.basis_size must be >= 1, got {self.basis_size}")
        if self.coefficient_lr is not None and self.coefficient_lr <= 0:
            raise ConfigError(f"strategy.coefficient_lr must be null or > 0, "
                              f"got {self.coefficient_lr}")
