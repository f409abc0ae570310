"""The benchmark interface: a sequence of tasks held as tensors, and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import pandas as pd
import torch

from cl_runner.data.augment import CropFlip
from cl_runner.data.masking import Split
from cl_runner.data.schemas import Augmentation, BenchmarkConfig


class Benchmark(ABC):
    """A task sequence. Inputs are stored as uint8 tensors and turned into model inputs per
    batch by :meth:`to_input`; labels are int64. Task ids are 1-based.

    Attributes:
        name: registered name.
        num_tasks: T.
        input_shape: shape of one example, e.g. ``(1, 28, 28)``.
        num_classes: size of the (shared) output layer.
        device: where every tensor this benchmark returns lives.
        host_attributes: names of attributes deliberately kept on the CPU (tables for the
            run files, e.g. Permuted MNIST's ``permutations``); every other tensor a benchmark
            holds is on :attr:`device` (checked by ``tests/test_devices.py``).
    """

    host_attributes: ClassVar[tuple[str, ...]] = ()
    #: the continual-learning scenario the tasks form (van de Ven, Tuytelaars & Tolias 2022):
    #: ``"domain_incremental"`` (one output layer, the task changes the inputs: Rotated and
    #: Permuted MNIST), ``"task_incremental"`` (task id given at test time, test-time class
    #: masks) or ``"class_incremental"`` (new classes per task, no task id at test time);
    #: benchmarks whose scenario is configurable set it in ``__init__`` (Split CIFAR-100).
    scenario: str = "domain_incremental"

    #: train-time augmentation (``benchmark.train_augmentation``; set by ``__init__``): the class
    #: defaults keep a benchmark that does not call ``Benchmark.__init__`` un-augmented
    augmentation: Augmentation = BenchmarkConfig.train_augmentation
    crop_padding: int = BenchmarkConfig.crop_padding
    augment_replayed: bool = BenchmarkConfig.augment_replayed

    name: str
    num_tasks: int
    input_shape: tuple[int, ...]
    num_classes: int
    device: torch.device

    def __init__(self, cfg: BenchmarkConfig, seed: int, device: torch.device):
        """The preamble every benchmark shares: validate ``cfg`` (:class:`ConfigError`), then
        keep its name, task count, ``train_samples_per_task``, the run ``seed`` and
        ``device``. Subclasses call it first, then load their data."""
        cfg.validate()
        self.name = cfg.name
        self.num_tasks = cfg.num_tasks
        self.train_samples_per_task = cfg.train_samples_per_task
        self.seed = seed
        self.device = torch.device(device)
        self.augmentation = Augmentation(cfg.train_augmentation)
        self.crop_padding = cfg.crop_padding
        self.augment_replayed = cfg.augment_replayed

    def subset_index(self, num_examples: int, task: int) -> torch.Tensor:
        """The seeded training subset of ``task``: int64 ``(min(n, num_examples),)`` indices
        into its ``num_examples`` training examples, on ``device``; n =
        ``train_samples_per_task`` (not ``None``). Fixed by (seed, task)."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + task)
        idx = torch.randperm(num_examples, generator=gen)[: self.train_samples_per_task]
        return idx.to(self.device)

    @abstractmethod
    def train_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training set of ``task`` (1-based): ``(x uint8 (N, *input_shape), y int64 (N,))``."""

    @abstractmethod
    def test_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Test set of ``task`` (1-based): ``(x uint8 (M, *input_shape), y int64 (M,))``."""

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """Stored uint8 batch ``(B, *input_shape)`` -> float32 model input in [0, 1]."""
        return x.float().div_(255.0)

    def train_augmenter(self, generator: torch.Generator) -> CropFlip | None:
        """The augmentation of one task's training batches (``benchmark.train_augmentation``),
        or None (``none``: no draw, no work). Called once per task by the loop: the device
        generator of the returned :class:`~cl_runner.data.augment.CropFlip` is seeded with one
        draw from the run's CPU ``generator`` (which a resumed run restores at the task
        boundary, so the task's shifts repeat). Stored batches must be ``(B, C, H, W)``."""
        if self.augmentation == Augmentation.none:
            return None
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        device_gen = torch.Generator(device=self.device).manual_seed(seed)
        return CropFlip(self.crop_padding, device_gen, self.augment_replayed)

    def artifacts(self) -> dict[str, pd.DataFrame]:
        """Tables describing the task sequence (angles, permutations...), file name -> frame."""
        return {}

    def class_masks(self, split: Split) -> torch.Tensor | None:
        """Which classes each task may predict in ``split`` (task-incremental protocols).

        Args:
            split: ``"train"`` (training steps and strategies' extra training) or ``"test"``
                (evaluation).

        Returns:
            bool ``(T, C)`` on :attr:`device`, row t-1 = the classes of task t (at least one
            True per row), or ``None``: no masking in that phase. Default ``None`` (every task
            uses the whole output layer, as in Rotated/Permuted MNIST); a benchmark with
            per-task classes overrides it (Split CIFAR-100). Callers ask once per task or
            pass, never in the training step; the arithmetic is in
            :mod:`cl_runner.data.masking`.
        """
        return None

    def eval_mask(self, task: int, trained: int) -> torch.Tensor | None:
        """The classes the evaluation may predict on ``task``'s test set after ``trained``
        tasks (0: the initial evaluation): bool ``(C,)`` on :attr:`device`, or None (every
        output). Default: task ``task``'s row of ``class_masks("test")`` (task-incremental),
        else None. A class-incremental benchmark whose protocol scores over the classes seen
        so far (van de Ven's "active classes") overrides it with the union of the classes of
        tasks ``1..max(trained, 1)``; called once per task and evaluation, never per batch."""
        masks = self.class_masks("test")
        return None if masks is None else masks[task - 1]

    def task_mask(self, task: int) -> torch.Tensor | None:
        """The classes of task ``task`` alone, bool ``(C,)`` on :attr:`device`, where tasks
        have classes of their own: the mask of the task-incremental matrix that the
        evaluation writes beside a class-incremental headline (the same logits, masked to
        the evaluated task's classes at evaluation only). None where the tasks share every
        output (Rotated/Permuted MNIST, domain-incremental splits). Default: task ``task``'s
        row of ``class_masks("test")``, else None."""
        masks = self.class_masks("test")
        return None if masks is None else masks[task - 1]

    def check_task(self, task: int) -> None:
        """Raise ``IndexError`` unless ``1 <= task <= num_tasks``."""
        if not 1 <= task <= self.num_tasks:
            raise IndexError(f"task {task} out of range 1..{self.num_tasks}")
