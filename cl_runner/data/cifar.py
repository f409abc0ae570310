"""Split CIFAR-100 (Mirzadeh et al. 2020, Section 5.1, and 2021, Section 5; docs/papers.md,
Protocol) and Split CIFAR-10 (Seq-CIFAR-10 of Buzzega et al., NeurIPS 2020): the class-split
family (:mod:`cl_runner.data.split`) on the CIFAR archives.

Split CIFAR-100: the 100 classes cut into ``num_tasks`` tasks of ``classes_per_task`` classes
(default 20 x 5: task t = classes 5(t-1) .. 5t-1, as in the authors' code; 10 x 10 with
``num_tasks=10 classes_per_task=10``), task-incremental by default. Split CIFAR-10: 5 x 2,
class-incremental by default. Task t's training and test sets are the images of its classes.

Storage: images stay uint8 ``(N, 3, 32, 32)`` on the run's device (the whole of CIFAR-100 is
184 MB as uint8, 737 MB as float32), and :meth:`SplitCIFAR.to_input` turns each batch into
float input in the same kernel launch: ``x / 255`` (authors: ``ToTensor`` only, the default)
or, with ``standardize``, per-channel ``(x / 255 - mean) / std`` with the dataset's
training-set statistics.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from cl_runner.data.schemas import (
    BENCHMARKS,
    NUM_CLASSES,
    Scenario,
    SplitCIFAR10Config,
    SplitCIFAR100Config,
    SplitConfig,
)
from cl_runner.data.sources import (
    CIFAR10_FOLDER,
    CIFAR100_FOLDER,
    load_cifar10,
    load_cifar100,
)
from cl_runner.data.split import ClassSplit

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "Scenario",
           "SplitCIFAR", "SplitCIFAR10", "SplitCIFAR10Config", "SplitCIFAR100",
           "SplitCIFAR100Config", "write_cifar10_archive", "write_cifar100_archive"]

#: per-channel mean and std of the CIFAR-100 training images in [0, 1] (R, G, B)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
#: the same for CIFAR-10
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class SplitCIFAR(ClassSplit):
    """A CIFAR archive as a class split (:class:`~cl_runner.data.split.ClassSplit`), with
    per-channel input scaling. Subclasses name the loader and the statistics.

    Memory (real CIFAR-100, all 20 tasks): training 50,000 x 3,072 B = 154 MB, test 31 MB, uint8.
    """

    input_shape = (3, 32, 32)
    MEAN: tuple[float, float, float]
    STD: tuple[float, float, float]

    @staticmethod
    def load(data_root: str, download: bool, verify_checksums: bool):
        """The loader of :mod:`cl_runner.data.sources` for this archive."""
        raise NotImplementedError

    def __init__(self, cfg: SplitConfig, data_root: str, download: bool, seed: int,
                 device: torch.device):
        cfg.validate()  # before any file is read
        *data, class_names = self.load(data_root, download, cfg.verify_checksums)
        super().__init__(cfg, seed, device, tuple(data), class_names, data_root)
        scale = torch.full((3,), 1.0 / 255.0)
        shift = torch.zeros(3)
        if cfg.standardize:
            std, mean = torch.tensor(self.STD), torch.tensor(self.MEAN)
            scale, shift = scale / std, -mean / std
        self._scale = scale.view(1, 3, 1, 1).to(self.device)
        self._shift = shift.view(1, 3, 1, 1).to(self.device)
        self.standardize = cfg.standardize

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, 32, 32)`` -> float32 ``(B, 3, 32, 32)``: ``x * scale + shift`` per
        channel, i.e. ``x / 255`` or, with ``standardize``, ``(x / 255 - mean) / std``."""
        return torch.addcmul(self._shift, x.float(), self._scale)


class SplitCIFAR100(SplitCIFAR):
    """Split CIFAR-100 (``benchmark=split_cifar100``); labels are the fine labels 0..99."""

    MEAN, STD = CIFAR100_MEAN, CIFAR100_STD
    @staticmethod
    def load(data_root: str, download: bool, verify_checksums: bool):
        return load_cifar100(data_root, download, verify_checksums)


class SplitCIFAR10(SplitCIFAR):
    """Split CIFAR-10 (``benchmark=split_cifar10``); labels are CIFAR-10's 0..9."""

    MEAN, STD = CIFAR10_MEAN, CIFAR10_STD
    @staticmethod
    def load(data_root: str, download: bool, verify_checksums: bool):
        return load_cifar10(data_root, download, verify_checksums)


BENCHMARKS.register("split_cifar100", config=SplitCIFAR100Config)(SplitCIFAR100)
BENCHMARKS.register("split_cifar10", config=SplitCIFAR10Config)(SplitCIFAR10)


def _patterns(rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """Learnable class images: class c is a fixed random 4x4 colour pattern upsampled to
    32x32, int ``(num_classes, 3, 32, 32)``."""
    patterns = rng.integers(40, 216, size=(num_classes, 3, 4, 4))
    return patterns.repeat(8, axis=2).repeat(8, axis=3)


def _images(rng: np.random.Generator, patterns: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 ``(N, 3072)`` rows (R, G and B planes, row-major): each label's pattern plus
    uniform noise in -40..40."""
    noise = rng.integers(-40, 41, size=(len(labels), 3, 32, 32))
    return np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8).reshape(len(labels), -1)


def write_cifar100_archive(root: str | Path, train_per_class: int = 5, test_per_class: int = 2,
                           seed: int = 0) -> Path:
    """Write a synthetic CIFAR-100 in the official python format, for tests and dry runs.

    Creates ``root/cifar-100-python/{train,test,meta}``: pickles holding ``data`` (uint8
    ``(N, 3072)``, each row the R, G and B planes of a 32x32 image, row-major), ``fine_labels``
    and ``coarse_labels`` (lists of int), ``filenames`` and ``batch_label``; ``meta`` holds
    ``fine_label_names`` and ``coarse_label_names``: the keys torchvision's ``CIFAR100`` reads.
    Images are learnable: class c is a fixed random 4x4 colour pattern upsampled to 32x32, plus
    uniform noise; examples are shuffled as in the real files. Not the official checksums, so
    read it with ``benchmark.verify_checksums=false``.

    Args:
        root: the data root to write into (created if needed).
        train_per_class: training images per class (real: 500).
        test_per_class: test images per class (real: 100).
        seed: seeds the patterns, the noise and the order.

    Returns:
        The folder ``root/cifar-100-python``.
    """
    rng = np.random.default_rng(seed)
    patterns = _patterns(rng, NUM_CLASSES)
    folder = Path(root) / CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), per_class))
        data = _images(rng, patterns, labels)
        entry = {"filenames": [f"img_{split}_{i:06d}.png" for i in range(len(labels))],
                 "batch_label": f"{split} batch (synthetic)",
                 "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(),
                 "data": data}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
    meta = {"fine_label_names": [f"class_{c:02d}" for c in range(NUM_CLASSES)],
            "coarse_label_names": [f"superclass_{c:02d}" for c in range(NUM_CLASSES // 5)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def write_cifar10_archive(root: str | Path, train_per_class: int = 5, test_per_class: int = 2,
                          seed: int = 0) -> Path:
    """Write a synthetic CIFAR-10 in the official python format, for tests and dry runs.

    Creates ``root/cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (the training
    images, shuffled, cut into 5 consecutive parts as the real archive's 10,000 each) and
    ``test_batch``, pickles holding ``data`` (uint8 ``(N, 3072)``, each row the R, G and B
    planes of a 32x32 image, row-major), ``labels`` (list of int), ``filenames`` and
    ``batch_label``; ``batches.meta`` holds ``label_names``, ``num_cases_per_batch`` and
    ``num_vis``: the keys torchvision's ``CIFAR10`` reads. Images as
    :func:`write_cifar100_archive`'s. Not the official checksums: read it with
    ``benchmark.verify_checksums=false``.

    Args:
        root: the data root to write into (created if needed).
        train_per_class: training images per class (real: 5,000).
        test_per_class: test images per class (real: 1,000).
        seed: seeds the patterns, the noise and the order.

    Returns:
        The folder ``root/cifar-10-batches-py``.
    """
    rng = np.random.default_rng(seed)
    patterns = _patterns(rng, 10)
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.permutation(np.repeat(np.arange(10), train_per_class))
    test = rng.permutation(np.repeat(np.arange(10), test_per_class))
    parts = [(f"data_batch_{i + 1}", part) for i, part in enumerate(np.array_split(train, 5))]
    for name, labels in [*parts, ("test_batch", test)]:
        entry = {"batch_label": f"{name} (synthetic)", "labels": labels.tolist(),
                 "data": _images(rng, patterns, labels),
                 "filenames": [f"img_{name}_{i:06d}.png" for i in range(len(labels))]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    meta = {"label_names": [f"class_{c}" for c in range(10)],
            "num_cases_per_batch": int(np.ceil(len(train) / 5)), "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return folder
