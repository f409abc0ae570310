"""Split CIFAR-100 (Mirzadeh et al. 2020, Section 5.1, and 2021, Section 5; docs/papers.md, Protocol).

CIFAR-100's 100 classes are cut into ``num_tasks`` tasks of ``classes_per_task`` classes
(default 20 x 5: task t = classes 5(t-1) .. 5t-1, as in the authors' code). Task t's training
and test sets are the CIFAR-100 images of its classes (2,500 training and 500 test images per
task on the real data). Labels keep their CIFAR-100 fine-label values 0..99 and the model has
one shared 100-way output layer; the task-incremental protocol masks it to the task's classes
(:mod:`cl_runner.data.masking`), at training and test time, or only at training time in
the class-incremental scenario.

Storage: images stay uint8 ``(N, 3, 32, 32)`` on the run's device (the whole of CIFAR-100 is
184 MB as uint8, 737 MB as float32), and :meth:`SplitCIFAR100.to_input` turns each batch into
float input in the same kernel launch: ``x / 255`` (authors: ``ToTensor`` only, the default)
or, with ``standardize``, per-channel ``(x / 255 - mean) / std`` with CIFAR-100's training-set
statistics.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import Split
from cl_runner.data.schemas import (
    BENCHMARKS,
    NUM_CLASSES,
    Scenario,
    SplitCIFAR100Config,
)
from cl_runner.data.sources import CIFAR100_FOLDER, load_cifar100
from cl_runner.errors import ConfigError

#: per-channel mean and std of the CIFAR-100 training images in [0, 1] (R, G, B)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class SplitCIFAR100(Benchmark):
    """Split CIFAR-100 held as per-task uint8 tensors on ``device``, with per-task class masks.

    Attributes:
        task_classes: int64 ``(T, k)`` on the CPU: row t-1 = the fine-label ids of task t.
        task_masks: bool ``(T, 100)`` on ``device``: row t-1 marks task t's classes.
        class_names: the 100 CIFAR-100 fine label names, by label id.

    Memory (real data, all 20 tasks): training 50,000 x 3,072 B = 154 MB, test 31 MB, uint8.
    """

    num_classes = NUM_CLASSES
    input_shape = (3, 32, 32)
    host_attributes = ("task_classes",)  # for classes.csv; task_masks is the device table

    def __init__(self, cfg: SplitCIFAR100Config, data_root: str, download: bool, seed: int,
                 device: torch.device):
        super().__init__(cfg, seed, device)
        self.scenario = Scenario(cfg.scenario)
        self.train_mask = cfg.train_mask
        k = cfg.classes_per_task
        self.task_classes = torch.tensor(cfg.order(), dtype=torch.long).view(self.num_tasks, k)
        masks = torch.zeros(self.num_tasks, NUM_CLASSES, dtype=torch.bool)
        masks.scatter_(1, self.task_classes, True)
        self.task_masks = masks.to(self.device)

        train_x, train_y, test_x, test_y, self.class_names = load_cifar100(
            data_root, download, cfg.verify_checksums)
        # task index (0-based) of every class, -1 for classes no task uses
        task_of_class = torch.full((NUM_CLASSES,), -1, dtype=torch.long)
        task_of_class[self.task_classes.flatten()] = torch.arange(self.num_tasks).repeat_interleave(k)
        self._train = self._split(train_x, train_y, task_of_class)
        self._test = self._split(test_x, test_y, task_of_class)
        if cfg.train_samples_per_task is not None:
            smallest = min(len(y) for _, y in self._train)
            if cfg.train_samples_per_task > smallest:
                raise ConfigError(
                    f"benchmark.train_samples_per_task={cfg.train_samples_per_task} exceeds the "
                    f"{smallest} training images of the smallest task"
                )
            subsets = []
            for t, (x, y) in enumerate(self._train, start=1):
                idx = self.subset_index(len(y), t)
                subsets.append((x[idx], y[idx]))
            self._train = subsets
        empty = [t for t in range(1, self.num_tasks + 1)
                 if len(self._train[t - 1][1]) == 0 or len(self._test[t - 1][1]) == 0]
        if empty:
            raise ConfigError(f"the CIFAR-100 archive in {data_root} has no training or no test "
                              f"images for the classes of tasks {empty}")

        scale = torch.full((3,), 1.0 / 255.0)
        shift = torch.zeros(3)
        if cfg.standardize:
            std, mean = torch.tensor(CIFAR100_STD), torch.tensor(CIFAR100_MEAN)
            scale, shift = scale / std, -mean / std
        self._scale = scale.view(1, 3, 1, 1).to(self.device)
        self._shift = shift.view(1, 3, 1, 1).to(self.device)
        self.standardize = cfg.standardize

    def _split(self, x: torch.Tensor, y: torch.Tensor, task_of_class: torch.Tensor
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per task: the images of its classes (in archive order), moved to the device."""
        task_of_example = task_of_class[y]
        out = []
        for t in range(self.num_tasks):
            idx = (task_of_example == t).nonzero().squeeze(1)
            out.append((x[idx].to(self.device), y[idx].to(self.device)))
        return out

    def train_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_task(task)
        return self._train[task - 1]

    def test_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_task(task)
        return self._test[task - 1]

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, 32, 32)`` -> float32 ``(B, 3, 32, 32)``: ``x * scale + shift`` per
        channel, i.e. ``x / 255`` or, with ``standardize``, ``(x / 255 - mean) / std``."""
        return torch.addcmul(self._shift, x.float(), self._scale)

    def class_masks(self, split: Split) -> torch.Tensor | None:
        """Bool ``(T, 100)`` task masks for ``split`` (overrides :meth:`Benchmark.class_masks`):
        training: ``task_masks`` when ``train_mask``; test: ``task_masks`` in the
        task-incremental scenario; else ``None``."""
        if split == "train":
            return self.task_masks if self.train_mask else None
        if split == "test":
            return self.task_masks if self.scenario == Scenario.task_incremental else None
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def artifacts(self) -> dict[str, pd.DataFrame]:
        k = self.task_classes.shape[1]
        ids = self.task_classes.flatten().tolist()
        return {"classes.csv": pd.DataFrame({
            "task": np.repeat(np.arange(1, self.num_tasks + 1), k),
            "class_id": ids,
            "class_name": [self.class_names[c] for c in ids],
        })}


BENCHMARKS.register("split_cifar100", config=SplitCIFAR100Config)(SplitCIFAR100)


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
    patterns = rng.integers(40, 216, size=(NUM_CLASSES, 3, 4, 4))
    patterns = patterns.repeat(8, axis=2).repeat(8, axis=3)  # (100, 3, 32, 32)
    folder = Path(root) / CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), per_class))
        noise = rng.integers(-40, 41, size=(len(labels), 3, 32, 32))
        data = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8).reshape(len(labels), -1)
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
