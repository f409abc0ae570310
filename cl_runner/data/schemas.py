"""The benchmarks' config schemas and their registry, ``BENCHMARKS`` (no torch imported).

Each schema is the dataclass a ``conf/benchmark/<name>.yaml`` extends; its ``validate()``
checks values before any file is read. The benchmarks themselves live in
:mod:`cl_runner.data.mnist` and :mod:`cl_runner.data.cifar`, imported when one is built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from omegaconf import MISSING

from cl_runner.checks import check_at_least_one
from cl_runner.data.files import MNIST_LAYOUT
from cl_runner.errors import ConfigError
from cl_runner.registry import Registry

#: name -> Benchmark subclass, called as ``cls(cfg, seed=..., device=...)``
BENCHMARKS: Registry = Registry("benchmark")


@dataclass
class BenchmarkConfig:
    """Keys shared by every benchmark (``benchmark.*``).

    Attributes:
        num_tasks: length of the task sequence T.
        train_samples_per_task: null = the whole training set per task; otherwise a seeded
            random subset of this many training examples per task.
        batch_size: training minibatch size of the continual phase.
        eval_batch_size: batch size of the (gradient-free) evaluation passes.
        epochs_per_task: passes over each task's training data (the papers: 1).
        max_steps_per_task: null (default): ``epochs_per_task`` whole passes. Otherwise each
            task's training phase stops after this many optimizer steps, its last epoch cut
            short (the SupSup authors' ``iter_lim``: 1000 batches of 128 within 3 epochs).
            A cap: when the passes hold fewer steps, all of them run.
        validation_fraction: 0 (default): evaluate on the test sets. In (0, 1): hold out this
            share of each task's training examples (seeded) and evaluate on them instead, for
            hyperparameter search without the test sets (:mod:`cl_runner.data.validation`).
    """

    name: str = MISSING
    num_tasks: int = 20
    train_samples_per_task: int | None = None
    batch_size: int = 10
    eval_batch_size: int = 1000
    epochs_per_task: int = 1
    max_steps_per_task: int | None = None
    validation_fraction: float = 0.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of any out-of-range value. Checks only
        the config (no file is read): called when the run config is resolved, before any
        data are loaded, and again by the benchmark's constructor."""
        check_at_least_one("benchmark", self, "num_tasks", "batch_size", "eval_batch_size",
                           "epochs_per_task")
        check_at_least_one("benchmark", self, "train_samples_per_task", "max_steps_per_task",
                           nullable=True)
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"benchmark.validation_fraction must be in [0, 1), got "
                              f"{self.validation_fraction}")
        limit = self.train_samples_limit()
        if self.train_samples_per_task is not None and limit is not None:
            most, what = limit
            if self.train_samples_per_task > most:
                raise ConfigError(f"benchmark.train_samples_per_task={self.train_samples_per_task} "
                                  f"exceeds the {most:,} {what}")

    def train_samples_limit(self) -> tuple[int, str] | None:
        """The most training examples a task of this benchmark has on the real dataset, and
        what they are (for the message), e.g. ``(60000, "MNIST training images")``; ``None``
        when unknown before the data are read."""
        return None


#: MNIST's training images (checked in the file headers by :func:`~cl_runner.data.sources.load_mnist`)
MNIST_TRAIN_SIZE = MNIST_LAYOUT["train-images-idx3-ubyte"][1][0]


@dataclass
class MNISTConfig(BenchmarkConfig):
    """Keys of the benchmarks built on MNIST; knows MNIST's training-set size, so that
    ``train_samples_per_task`` is checked before any file is read.

    Attributes:
        standardize: model inputs ``(x - 0.1307) / 0.3081`` (MNIST's mean and std) instead of
            ``x`` in [0, 1] (default false, the MC-SGD papers' inputs; SupSup's code
            standardizes).
    """

    standardize: bool = False

    def train_samples_limit(self) -> tuple[int, str] | None:
        return MNIST_TRAIN_SIZE, "MNIST training images"


@dataclass
class RotatedMNISTConfig(MNISTConfig):
    """``benchmark=rotated_mnist``.

    Attributes:
        angle_step: degrees between consecutive tasks; task t is rotated by (t-1)*angle_step
            (the MC-SGD code: 9).
        angles: explicit list of ``num_tasks`` angles in degrees; overrides ``angle_step``.
    """

    name: str = "rotated_mnist"
    angle_step: float = 9.0
    angles: list[float] | None = None

    def validate(self) -> None:
        super().validate()
        if self.angles is not None and len(self.angles) != self.num_tasks:
            raise ConfigError(f"benchmark.angles has {len(self.angles)} entries but "
                              f"benchmark.num_tasks={self.num_tasks}")


@dataclass
class PermutedMNISTConfig(MNISTConfig):
    """``benchmark=permuted_mnist``: task 1 unpermuted, later tasks a fixed random pixel
    permutation each, drawn from the run seed.

    Attributes:
        permute_first_task: permute task 1 as well (SupSup's code permutes every task;
            default false: task 1 is plain MNIST, as in the MC-SGD papers).
    """

    name: str = "permuted_mnist"
    permute_first_task: bool = False


NUM_CLASSES = 100


#: training images per class in CIFAR-100 (test: 100)
TRAIN_PER_CLASS = 500


class Scenario(str, enum.Enum):
    """What the output mask does at test time."""

    task_incremental = "task_incremental"  # task id known at test time: mask to its classes
    class_incremental = "class_incremental"  # no mask at test time: argmax over all 100 classes


@dataclass
class SplitCIFAR100Config(BenchmarkConfig):
    """``benchmark=split_cifar100``.

    Attributes:
        classes_per_task: classes per task (papers: 5); ``num_tasks * classes_per_task <= 100``.
        class_order: explicit order of the classes (distinct ids in 0..99, at least
            ``num_tasks * classes_per_task`` of them); task t takes the t-th block. Wins over
            ``class_order_seed``.
        class_order_seed: null = natural order 0..99 (authors' code); an integer = a random
            permutation of the 100 classes drawn from that seed (independent of the run seed,
            so that seeds of a sweep share one order; set it to ``${seed}`` to tie them).
        scenario: ``task_incremental`` (papers: mask at training and test time) or
            ``class_incremental`` (no mask at test time).
        train_mask: mask the logits to the current task's classes while training (papers:
            true). In the class-incremental scenario, false trains one plain 100-way head.
        standardize: false = inputs in [0, 1] (authors' code); true = per-channel
            standardization with CIFAR-100's training mean and std.
        verify_checksums: check the files against the official archive's MD5 sums; false
            accepts any archive in the same format (e.g. a generated one).
        supported_models: models that fit this benchmark (checked before any data is loaded).
    """

    name: str = "split_cifar100"
    num_tasks: int = 20
    classes_per_task: int = 5
    class_order: list[int] | None = None
    class_order_seed: int | None = None
    scenario: Scenario = Scenario.task_incremental
    train_mask: bool = True
    standardize: bool = False
    verify_checksums: bool = True

    supported_models: ClassVar[tuple[str, ...]] = ("resnet18_reduced",
                                                  "masked_resnet18_reduced")

    def validate(self) -> None:
        check_at_least_one("benchmark", self, "classes_per_task")
        super().validate()
        used = self.num_tasks * self.classes_per_task
        if used > NUM_CLASSES:
            raise ConfigError(
                f"benchmark.num_tasks * benchmark.classes_per_task = {self.num_tasks} * "
                f"{self.classes_per_task} = {used} exceeds CIFAR-100's {NUM_CLASSES} classes"
            )
        if self.class_order is not None:
            order = list(self.class_order)
            if (len(set(order)) != len(order) or len(order) < used
                    or not all(0 <= c < NUM_CLASSES for c in order)):
                raise ConfigError(
                    f"benchmark.class_order must list at least {used} distinct class ids in "
                    f"0..{NUM_CLASSES - 1}, got {order}"
                )

    def train_samples_limit(self) -> tuple[int, str] | None:
        return (TRAIN_PER_CLASS * self.classes_per_task,
                f"training images of a task ({self.classes_per_task} classes x "
                f"{TRAIN_PER_CLASS} in CIFAR-100)")

    def order(self) -> list[int]:
        """The class order: task t gets ``order[(t-1)*k : t*k]`` (k = classes_per_task)."""
        used = self.num_tasks * self.classes_per_task
        if self.class_order is not None:
            return [int(c) for c in self.class_order][:used]
        if self.class_order_seed is None:
            return list(range(used))
        import torch  # only when the benchmark is built: this module imports no torch

        gen = torch.Generator().manual_seed(int(self.class_order_seed))
        return torch.randperm(NUM_CLASSES, generator=gen)[:used].tolist()


BENCHMARKS.declare("rotated_mnist", config=RotatedMNISTConfig, module="cl_runner.data.mnist")
BENCHMARKS.declare("permuted_mnist", config=PermutedMNISTConfig, module="cl_runner.data.mnist")
BENCHMARKS.declare("split_cifar100", config=SplitCIFAR100Config, module="cl_runner.data.cifar")
