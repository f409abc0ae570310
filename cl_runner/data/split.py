"""The class-split benchmark family: a dataset split into tasks of k classes (Split MNIST,
Split CIFAR-10, Split CIFAR-100), in the three scenarios of van de Ven, Tuytelaars & Tolias
("Three types of incremental learning", Nature MI 2022; van de Ven & Tolias, arXiv 1904.07734).

The class order (``benchmark.class_order`` / ``class_order_seed``) cuts the dataset's C classes
into ``num_tasks`` blocks of k; task t's training and test sets are the examples of its
classes, in the dataset's order. What the labels and masks are depends on the scenario:

- **task-incremental**: labels keep their dataset ids, one C-way head; the logits are masked
  to the task's classes at test time (the task id is given) and, by default, at training time
  (:mod:`cl_runner.data.masking`);
- **domain-incremental**: task t's j-th class is relabelled j, a k-way head shared by every
  task, no mask, no task id (van de Ven's "domain" scenario: e.g. "even or odd digit");
- **class-incremental**: labels keep their dataset ids, one C-way head, no task id; the
  evaluation predicts over every output or over the classes of the tasks trained so far
  (``benchmark.eval_classes``, :meth:`ClassSplit.eval_mask`); training uses every output by
  default (``benchmark.train_mask``).

Storage: each task's images stay as stored (uint8) on the run's device, selected once from
the whole dataset's tensors; batches are index slices (docs/design.md, principle 5).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cl_runner.data.benchmark import Benchmark
from cl_runner.data.masking import Split
from cl_runner.data.schemas import EvalClasses, Scenario, SplitConfig, as_scenario
from cl_runner.errors import ConfigError


class ClassSplit(Benchmark):
    """A dataset split into ``num_tasks`` tasks of k classes, held as per-task tensors on
    ``device`` (see the module docstring for the scenarios).

    Args:
        cfg: the split's config (validated here).
        data: the whole dataset: ``(train_x, train_y, test_x, test_y)``, images ``(N, ...)``
            (any dtype :meth:`to_input` takes), labels int64 ``(N,)`` in ``0..C-1``.
        class_names: the C class names, by dataset id.
        source: where the data came from, for messages (e.g. the data root).

    Attributes:
        task_classes: int64 ``(T, k)`` on the CPU: row t-1 = the dataset ids of task t's classes.
        task_masks: bool ``(T, num_classes)`` on ``device``: row t-1 marks task t's outputs
            (domain-incremental: all k).
        scenario: ``Scenario.task_incremental`` / ``domain_incremental`` / ``class_incremental``.
        num_classes: C, or k on domain-incremental.

    Raises:
        ConfigError: ``train_samples_per_task`` above the smallest task's training examples,
            or a task without training or test examples in the data.
    """

    host_attributes = ("task_classes",)  # for classes.csv; task_masks is the device table

    def __init__(self, cfg: SplitConfig, seed: int, device: torch.device,
                 data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                 class_names: list[str], source: str):
        super().__init__(cfg, seed, device)
        self.scenario = as_scenario(cfg.scenario)
        self.train_mask = bool(cfg.train_mask)
        self.eval_classes = EvalClasses(cfg.eval_classes)
        self.class_names = list(class_names)
        dataset_classes = len(self.class_names)
        k = cfg.classes_per_task
        self.task_classes = torch.tensor(cfg.order(), dtype=torch.long).view(self.num_tasks, k)
        domain = self.scenario == Scenario.domain_incremental
        self.num_classes = k if domain else dataset_classes
        masks = torch.zeros(self.num_tasks, self.num_classes, dtype=torch.bool)
        if domain:
            masks[:] = True
        else:
            masks.scatter_(1, self.task_classes, True)
        self.task_masks = masks.to(self.device)
        # per dataset class: its task (0-based; -1 for classes no task uses) and its label
        task_of_class = torch.full((dataset_classes,), -1, dtype=torch.long)
        task_of_class[self.task_classes.flatten()] = torch.arange(self.num_tasks).repeat_interleave(k)
        label_of_class = torch.arange(dataset_classes)
        if domain:
            label_of_class[self.task_classes.flatten()] = torch.arange(k).repeat(self.num_tasks)
        train_x, train_y, test_x, test_y = data
        self._train = self._split(train_x, train_y, task_of_class, label_of_class)
        self._test = self._split(test_x, test_y, task_of_class, label_of_class)
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
            raise ConfigError(f"the {cfg.dataset_name} data in {source} have no training or no "
                              f"test images for the classes of tasks {empty}")

    def _split(self, x: torch.Tensor, y: torch.Tensor, task_of_class: torch.Tensor,
               label_of_class: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per task: the images of its classes (in dataset order) and their labels, moved to
        the device."""
        task_of_example = task_of_class[y]
        labels = label_of_class[y]
        out = []
        for t in range(self.num_tasks):
            idx = (task_of_example == t).nonzero().squeeze(1)
            out.append((x[idx].to(self.device), labels[idx].to(self.device)))
        return out

    def train_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_task(task)
        return self._train[task - 1]

    def test_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_task(task)
        return self._test[task - 1]

    def class_masks(self, split: Split) -> torch.Tensor | None:
        """Bool ``(T, C)`` task masks for ``split`` (overrides :meth:`Benchmark.class_masks`):
        training: ``task_masks`` when ``train_mask`` (task-incremental by default;
        class-incremental only when asked: van de Ven's "current" active classes); test:
        ``task_masks`` on task-incremental; else ``None``."""
        if split == "train":
            return self.task_masks if self.train_mask else None
        if split == "test":
            return self.task_masks if self.scenario == Scenario.task_incremental else None
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def eval_mask(self, task: int, trained: int) -> torch.Tensor | None:
        """Task-incremental: task ``task``'s classes. Class-incremental with ``eval_classes:
        seen``: the union of the classes of tasks ``1..max(trained, 1)`` (van de Ven's
        "all-so-far" active classes; before any training, task 1's), bool ``(C,)``;
        otherwise None (every output)."""
        if self.scenario == Scenario.class_incremental and self.eval_classes == EvalClasses.seen:
            return self.task_masks[: max(trained, 1)].any(0)
        return super().eval_mask(task, trained)

    def task_mask(self, task: int) -> torch.Tensor | None:
        """Task ``task``'s classes (``task_masks`` row) on task- and class-incremental splits;
        None on domain-incremental (every task uses all k outputs)."""
        if self.scenario == Scenario.domain_incremental:
            return None
        return self.task_masks[task - 1]

    def artifacts(self) -> dict[str, pd.DataFrame]:
        """``classes.csv``: one row per (task, class): ``task`` (1-based), ``class_id`` (the
        dataset's id), ``class_name``; on domain-incremental also ``label`` (the shared
        output the class is mapped to)."""
        k = self.task_classes.shape[1]
        ids = self.task_classes.flatten().tolist()
        frame = pd.DataFrame({
            "task": np.repeat(np.arange(1, self.num_tasks + 1), k),
            "class_id": ids,
            "class_name": [self.class_names[c] for c in ids],
        })
        if self.scenario == Scenario.domain_incremental:
            frame["label"] = np.tile(np.arange(k), self.num_tasks)
        return {"classes.csv": frame}
