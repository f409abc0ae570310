"""Rotated MNIST and Permuted MNIST (Mirzadeh et al. 2020, 2021; docs/papers.md, Protocol), and
Split MNIST (van de Ven & Tolias 2019; the DER paper's Seq-MNIST).

Rotated/Permuted: every task has the 10 MNIST classes; task t's training and test sets are the
MNIST sets under the task's transform, applied once to whole uint8 tensors (no per-sample
Python). Split MNIST: the class-split family (:mod:`cl_runner.data.split`) on MNIST's digits.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torchvision.transforms.v2 import functional as TF

from cl_runner.data.benchmark import Benchmark, BenchmarkConfig
from cl_runner.data.schemas import (
    BENCHMARKS,
    PermutedMNISTConfig,
    RotatedMNISTConfig,
    SplitMNISTConfig,
)
from cl_runner.data.sources import load_mnist
from cl_runner.data.split import ClassSplit


def rotation_index(shape: tuple[int, ...], angle: float,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Where each output pixel of a nearest-neighbour rotation comes from.

    Rotates an image whose pixel k holds k+1 with torchvision's ``rotate`` (nearest, zero
    fill), so entry k of the result is 1 + the flat source index of output pixel k, or 0 where
    the output is fill. Exact: nearest sampling copies values, and indices up to 2**24 are
    exact in float32 (the sampling grid is the same float32 grid torchvision uses for uint8).

    Args:
        shape: one image's ``(C, H, W)``.
        angle: degrees, counter-clockwise.
        device: where the index is made and returned.

    Returns:
        int64 ``(C*H*W,)`` in ``0..C*H*W``, on ``device``.
    """
    numel = math.prod(shape)
    source = torch.arange(1, numel + 1, dtype=torch.float32, device=device).view(1, *shape)
    out = TF.rotate(source, float(angle), interpolation=TF.InterpolationMode.NEAREST, fill=0)
    return out.flatten().round().long()


def rotate(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate a batch of images counter-clockwise by ``angle`` degrees about the image centre.

    Args:
        x: uint8 ``(N, C, H, W)``.
        angle: degrees.

    Returns:
        uint8 ``(N, C, H, W)``; nearest-neighbour sampling, zero fill (as PIL's ``rotate``,
        which the authors' code applies per image). Byte-identical to torchvision's
        ``rotate`` on the whole batch, done as one gather of pixels through
        :func:`rotation_index` (60,000 MNIST images: ~0.1-0.6 s instead of 1.4-4 s at 1 thread,
        issue 32; ``tests/test_data.py`` compares the two).
    """
    n = x.shape[0]
    index = rotation_index(tuple(x.shape[1:]), angle, x.device)
    padded = torch.cat([x.new_zeros(n, 1), x.reshape(n, -1)], dim=1)  # column 0: the fill
    return torch.index_select(padded, 1, index).view_as(x)


def permute_pixels(x: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Apply one pixel permutation to a batch: ``out.flatten(1)[:, k] = x.flatten(1)[:, permutation[k]]``.

    Args:
        x: ``(N, C, H, W)``.
        permutation: int64 ``(C*H*W,)``, a bijection of ``0..C*H*W-1``.
    """
    return x.flatten(1)[:, permutation].view_as(x)


class TransformedMNIST(Benchmark):
    """MNIST under one fixed transform per task. Test sets are built once for all tasks; a
    task's training set is built when the task asks for it (memory: ~47 MB uint8 per task)."""

    num_classes = 10
    input_shape = (1, 28, 28)

    def __init__(self, cfg: BenchmarkConfig, data_root: str, download: bool, seed: int,
                 device: torch.device):
        super().__init__(cfg, seed, device)
        self.standardize = bool(getattr(cfg, "standardize", False))
        train_x, train_y, test_x, test_y = load_mnist(data_root, download)
        self._train_x, self._train_y = train_x.to(self.device), train_y.to(self.device)
        test_x, test_y = test_x.to(self.device), test_y.to(self.device)
        self._test = [(self.transform(test_x, t), test_y) for t in range(1, self.num_tasks + 1)]

    #: MNIST's pixel mean and std (of the training set, in [0, 1]) for ``standardize``
    MEAN, STD = 0.1307, 0.3081

    def transform(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Task ``task``'s transform of a uint8 batch ``(N, 1, 28, 28)``."""
        raise NotImplementedError

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """Stored uint8 batch -> float32 model input: in [0, 1], or standardized
        (``(x - MEAN) / STD``) with ``benchmark.standardize``."""
        out = x.float().div_(255.0)
        return out.sub_(self.MEAN).div_(self.STD) if self.standardize else out

    def train_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_task(task)
        x, y = self._train_x, self._train_y
        if self.train_samples_per_task is not None:
            idx = self.subset_index(len(y), task)
            x, y = x[idx], y[idx]
        return self.transform(x, task), y

    def test_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_task(task)
        return self._test[task - 1]


class RotatedMNIST(TransformedMNIST):
    """Task t = MNIST rotated by ``angles[t-1]`` degrees (default (t-1) * angle_step)."""

    def __init__(self, cfg: RotatedMNISTConfig, data_root: str, download: bool, seed: int,
                 device: torch.device):
        if cfg.angles is not None:  # its length is checked by cfg.validate()
            self.angles = [float(a) for a in cfg.angles]
        else:
            self.angles = [(t - 1) * float(cfg.angle_step) for t in range(1, cfg.num_tasks + 1)]
        super().__init__(cfg, data_root, download, seed, device)

    def transform(self, x: torch.Tensor, task: int) -> torch.Tensor:
        angle = self.angles[task - 1]
        return x if angle == 0.0 else rotate(x, angle)

    def artifacts(self) -> dict[str, pd.DataFrame]:
        return {"angles.csv": pd.DataFrame({"task": range(1, self.num_tasks + 1),
                                            "angle_degrees": self.angles})}


class PermutedMNIST(TransformedMNIST):
    """Task 1 = MNIST (permuted too with ``permute_first_task``); task t >= 2 = MNIST under a
    random pixel permutation drawn from the seed."""

    host_attributes = ("permutations",)  # for permutations.csv; the device copy transforms

    def __init__(self, cfg: PermutedMNISTConfig, data_root: str, download: bool, seed: int,
                 device: torch.device):
        gen = torch.Generator().manual_seed(seed)
        num_pixels = 28 * 28
        # tasks 2..T draw the same permutations whether task 1 is permuted or not
        perms = [torch.randperm(num_pixels, generator=gen) for _ in range(cfg.num_tasks - 1)]
        first = (torch.randperm(num_pixels, generator=gen) if cfg.permute_first_task
                 else torch.arange(num_pixels))
        self.permutations = torch.stack([first, *perms])  # (T, 784)
        self._identity_first = not cfg.permute_first_task
        self._perms_on_device = self.permutations.to(device)
        super().__init__(cfg, data_root, download, seed, device)

    def transform(self, x: torch.Tensor, task: int) -> torch.Tensor:
        if task == 1 and self._identity_first:
            return x
        return permute_pixels(x, self._perms_on_device[task - 1])

    def artifacts(self) -> dict[str, pd.DataFrame]:
        frame = pd.DataFrame(self.permutations.numpy(),
                             columns=[f"pixel_{k}" for k in range(self.permutations.shape[1])])
        frame.insert(0, "task", range(1, self.num_tasks + 1))
        return {"permutations.csv": frame}


class SplitMNIST(ClassSplit):
    """Split MNIST (``benchmark=split_mnist``): 5 tasks of 2 digits by default (0/1, 2/3, 4/5,
    6/7, 8/9), class-incremental by default; the scenarios of
    :class:`~cl_runner.data.split.ClassSplit`. Images uint8 ``(N, 1, 28, 28)`` on the device;
    inputs in [0, 1] or standardized as :class:`TransformedMNIST`'s. Memory: the whole of
    MNIST, 55 MB uint8."""

    input_shape = (1, 28, 28)

    def __init__(self, cfg: SplitMNISTConfig, data_root: str, download: bool, seed: int,
                 device: torch.device):
        cfg.validate()  # before any file is read
        data = load_mnist(data_root, download)
        super().__init__(cfg, seed, device, data, [str(d) for d in range(10)], data_root)
        self.standardize = cfg.standardize

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """Stored uint8 batch -> float32 model input, as :meth:`TransformedMNIST.to_input`."""
        out = x.float().div_(255.0)
        if self.standardize:
            out = out.sub_(TransformedMNIST.MEAN).div_(TransformedMNIST.STD)
        return out


BENCHMARKS.register("rotated_mnist", config=RotatedMNISTConfig)(RotatedMNIST)
BENCHMARKS.register("split_mnist", config=SplitMNISTConfig)(SplitMNIST)
BENCHMARKS.register("permuted_mnist", config=PermutedMNISTConfig)(PermutedMNIST)
