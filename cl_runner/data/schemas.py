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


class Augmentation(str, enum.Enum):
    """Train-time augmentation of the continual phase's batches (``benchmark.train_augmentation``;
    :mod:`cl_runner.data.augment`)."""

    none = "none"  # the stored images as they are (default)
    crop_flip = "crop_flip"  # random crop with zero padding + horizontal flip (DER's CIFAR protocol)


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
        train_augmentation: ``none`` (default) or ``crop_flip``: each training batch of the
            continual phase is randomly cropped from the batch zero-padded by ``crop_padding``
            and flipped left-right with probability 1/2, on the run's device, drawn from a
            generator seeded per task from the run's generator (:mod:`cl_runner.data.augment`;
            the DER paper's CIFAR protocol). Never at evaluation, nor in strategies' own passes
            over stored data (Fisher, herding, memory gradients).
        crop_padding: p of ``crop_flip`` (DER, Mammoth ``RandomCrop(32, padding=4)``: 4).
        augment_replayed: ``crop_flip`` also augments the examples a strategy appends to the
            batch (replay buffers): true (default) as Mammoth's ``buffer.get_data(...,
            transform=self.transform)``; false: only the current task's examples.
    """

    name: str = MISSING
    num_tasks: int = 20
    train_samples_per_task: int | None = None
    batch_size: int = 10
    eval_batch_size: int = 1000
    epochs_per_task: int = 1
    max_steps_per_task: int | None = None
    validation_fraction: float = 0.0
    train_augmentation: Augmentation = Augmentation.none
    crop_padding: int = 4
    augment_replayed: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key of any out-of-range value. Checks only
        the config (no file is read): called when the run config is resolved, before any
        data are loaded, and again by the benchmark's constructor."""
        check_at_least_one("benchmark", self, "num_tasks", "batch_size", "eval_batch_size",
                           "epochs_per_task")
        check_at_least_one("benchmark", self, "train_samples_per_task", "max_steps_per_task",
                           nullable=True)
        if self.crop_padding < 0:
            raise ConfigError(f"benchmark.crop_padding must be >= 0, got {self.crop_padding}")
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


#: CIFAR-100's classes (fine labels)
NUM_CLASSES = 100


#: training images per class in CIFAR-100 (test: 100)
TRAIN_PER_CLASS = 500

#: the three scenarios of van de Ven, Tuytelaars & Tolias (Nature MI 2022), by their stored
#: names; ``task``, ``domain`` and ``class`` are aliases (``benchmark.scenario=class`` stores
#: ``class_incremental``, so results of the long names compare equal)
Scenario = enum.Enum("Scenario", [
    ("task_incremental", "task_incremental"),  # task id given at test time: its classes only
    ("domain_incremental", "domain_incremental"),  # k shared outputs, no task id
    ("class_incremental", "class_incremental"),  # one head over all classes, no task id
    ("task", "task_incremental"), ("domain", "domain_incremental"),
    ("class", "class_incremental"),
], type=str, module=__name__)
Scenario.__doc__ = "What a split benchmark's tasks form (``benchmark.scenario``)."


def as_scenario(value: str) -> Scenario:
    """A :data:`Scenario` from a member, its name or alias (``"class"``) or its value.

    Raises:
        ConfigError: naming the valid values.
    """
    if isinstance(value, Scenario):
        return value
    if value in Scenario.__members__:
        return Scenario[value]
    try:
        return Scenario(value)
    except ValueError:
        raise ConfigError(f"benchmark.scenario={value!r} is not one of "
                          f"{', '.join(Scenario.__members__)}") from None


class EvalClasses(str, enum.Enum):
    """Which outputs a class-incremental evaluation may predict (``benchmark.eval_classes``):
    van de Ven's "active classes" at test time."""

    all = "all"  # every output of the head (van de Ven's code, eval/evaluate.py: allowed_classes=None)
    seen = "seen"  # the classes of the tasks trained so far (task 1's before any training)


@dataclass
class SplitConfig(BenchmarkConfig):
    """Keys of a dataset split into tasks of ``classes_per_task`` classes (the class-split
    family: ``split_mnist``, ``split_cifar10``, ``split_cifar100``; :mod:`cl_runner.data.split`).

    Attributes:
        classes_per_task: k; ``num_tasks * k`` at most the dataset's classes.
        class_order: explicit order of the classes (distinct ids of the dataset, at least
            ``num_tasks * k`` of them); task t takes the t-th block of k. Wins over
            ``class_order_seed``.
        class_order_seed: null = the natural order 0..C-1; an integer = a random permutation
            of the C classes drawn from that seed, independent of the run seed (seeds of a
            sweep share one order; iCaRL and the class-incremental literature use 1993).
        scenario: ``task_incremental`` (``task``): the head's outputs are masked to the task's
            classes at test time, the task id given; ``domain_incremental`` (``domain``):
            each task's classes are relabelled 0..k-1 onto k shared outputs (task t's j-th
            class is label j), no task id; ``class_incremental`` (``class``): one head over
            all C classes, no task id, no test-time mask (or the seen classes, see
            ``eval_classes``).
        train_mask: mask each training example's logits to its task's classes. null = the
            scenario's protocol: true on task-incremental, false on class-incremental (all
            outputs active while training: van de Ven's code, ``--active-classes all``, its
            default; Mammoth's class-IL training) and domain-incremental. true on
            class-incremental is van de Ven's ``current`` active classes (what
            ``split_cifar100`` with ``scenario=class_incremental`` did before this key had a
            null). Resolved when the config is built, so stored configs hold true or false.
        eval_classes: class-incremental only: ``all`` outputs (default) or the classes
            ``seen`` so far (van de Ven's "all-so-far" active classes at test time).

    Class-incremental protocols that train on the classes seen so far ("all-so-far") are not
    offered: the loop's per-example masks are those of each example's own task.
    """

    classes_per_task: int = 2
    class_order: list[int] | None = None
    class_order_seed: int | None = None
    scenario: Scenario = Scenario.task_incremental
    train_mask: bool | None = None
    eval_classes: EvalClasses = EvalClasses.all

    #: the dataset's number of classes C, its name (for messages) and training images per class
    dataset_classes: ClassVar[int] = 10
    dataset_name: ClassVar[str] = "the dataset"
    train_per_class: ClassVar[int | None] = None

    def __post_init__(self) -> None:
        if self.train_mask is None:
            self.train_mask = as_scenario(self.scenario) == Scenario.task_incremental

    def validate(self) -> None:
        check_at_least_one("benchmark", self, "classes_per_task")
        super().validate()
        used = self.num_tasks * self.classes_per_task
        if used > self.dataset_classes:
            raise ConfigError(
                f"benchmark.num_tasks * benchmark.classes_per_task = {self.num_tasks} * "
                f"{self.classes_per_task} = {used} exceeds {self.dataset_name}'s "
                f"{self.dataset_classes} classes"
            )
        if self.class_order is not None:
            order = list(self.class_order)
            if (len(set(order)) != len(order) or len(order) < used
                    or not all(0 <= c < self.dataset_classes for c in order)):
                raise ConfigError(
                    f"benchmark.class_order must list at least {used} distinct class ids in "
                    f"0..{self.dataset_classes - 1}, got {order}"
                )
        if as_scenario(self.scenario) == Scenario.domain_incremental and self.train_mask:
            raise ConfigError("benchmark.train_mask=true does not apply to "
                              "benchmark.scenario=domain_incremental (its k outputs are shared "
                              "by every task); leave it null")

    def train_samples_limit(self) -> tuple[int, str] | None:
        if self.train_per_class is None:
            return None
        return (self.train_per_class * self.classes_per_task,
                f"training images of a task ({self.classes_per_task} classes x "
                f"{self.train_per_class} in {self.dataset_name})")

    def order(self) -> list[int]:
        """The class order: task t gets ``order[(t-1)*k : t*k]`` (k = classes_per_task)."""
        used = self.num_tasks * self.classes_per_task
        if self.class_order is not None:
            return [int(c) for c in self.class_order][:used]
        if self.class_order_seed is None:
            return list(range(used))
        import torch  # only when the benchmark is built: this module imports no torch

        gen = torch.Generator().manual_seed(int(self.class_order_seed))
        return torch.randperm(self.dataset_classes, generator=gen)[:used].tolist()


@dataclass
class SplitCIFAR100Config(SplitConfig):
    """``benchmark=split_cifar100`` (Mirzadeh et al. 2020, 2021: 20 tasks of 5 classes,
    task-incremental; 10 x 10 with ``num_tasks=10 classes_per_task=10``).

    Attributes:
        standardize: false = inputs in [0, 1] (authors' code); true = per-channel
            standardization with CIFAR-100's training mean and std.
        verify_checksums: check the files against the official archive's MD5 sums; false
            accepts any archive in the same format (e.g. a generated one).
        supported_models: models that fit this benchmark (checked before any data is loaded).
    """

    name: str = "split_cifar100"
    num_tasks: int = 20
    classes_per_task: int = 5
    standardize: bool = False
    verify_checksums: bool = True

    dataset_classes: ClassVar[int] = NUM_CLASSES
    dataset_name: ClassVar[str] = "CIFAR-100"
    train_per_class: ClassVar[int | None] = TRAIN_PER_CLASS
    supported_models: ClassVar[tuple[str, ...]] = ("resnet18_reduced",
                                                  "masked_resnet18_reduced")


@dataclass
class SplitCIFAR10Config(SplitConfig):
    """``benchmark=split_cifar10``: 5 tasks of 2 CIFAR-10 classes, class-incremental by default
    (Seq-CIFAR-10 of Buzzega et al., NeurIPS 2020; Mammoth's ``seq-cifar10``).

    Attributes:
        standardize, verify_checksums: as :class:`SplitCIFAR100Config`, with CIFAR-10's
            statistics and checksums.
    """

    name: str = "split_cifar10"
    num_tasks: int = 5
    scenario: Scenario = Scenario.class_incremental
    standardize: bool = False
    verify_checksums: bool = True

    dataset_classes: ClassVar[int] = 10
    dataset_name: ClassVar[str] = "CIFAR-10"
    train_per_class: ClassVar[int | None] = 5000
    supported_models: ClassVar[tuple[str, ...]] = ("resnet18_reduced",
                                                  "masked_resnet18_reduced")


@dataclass
class SplitMNISTConfig(SplitConfig):
    """``benchmark=split_mnist``: 5 tasks of 2 digits (0/1, 2/3, ...), class-incremental by
    default (van de Ven & Tolias 2019; van de Ven, Tuytelaars & Tolias 2022; the DER paper's
    Seq-MNIST), on the real MNIST.

    Attributes:
        standardize: as :class:`MNISTConfig`.
    """

    name: str = "split_mnist"
    num_tasks: int = 5
    scenario: Scenario = Scenario.class_incremental
    standardize: bool = False

    dataset_classes: ClassVar[int] = 10
    dataset_name: ClassVar[str] = "MNIST"


BENCHMARKS.declare("rotated_mnist", config=RotatedMNISTConfig, module="cl_runner.data.mnist")
BENCHMARKS.declare("permuted_mnist", config=PermutedMNISTConfig, module="cl_runner.data.mnist")
BENCHMARKS.declare("split_cifar100", config=SplitCIFAR100Config, module="cl_runner.data.cifar")
BENCHMARKS.declare("split_cifar10", config=SplitCIFAR10Config, module="cl_runner.data.cifar")
BENCHMARKS.declare("split_mnist", config=SplitMNISTConfig, module="cl_runner.data.mnist")
