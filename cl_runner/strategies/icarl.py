"""iCaRL: Incremental Classifier and Representation Learning (Rebuffi, Kolesnikov, Sperl &
Lampert, CVPR 2017, arXiv 1611.07725; Section 2 and Algorithms 1-5).

Three parts, each after the paper, with the deviations named:

**Exemplar memory** (Sec. 2.2, Alg. 2, 4, 5). A fixed total of K = ``memory_size`` exemplars,
split evenly over the exemplar sets held: after task t, every set keeps m = floor(K / #sets)
(the authors' code rounds up, which can exceed K). A task's new sets are selected by *herding*
(Alg. 4) in L2-normalized feature space (``model.features``), with the model as trained on the
task: with mu the mean of the class's normalized features phi(x), the k-th exemplar is
``argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||`` over the examples not yet picked (the
exemplars are distinct images, as in Mammoth's ``icarl``; the authors' code herds in the
equivalent dot-product form and skips re-picks). mu is not re-normalized (Alg. 4 and the
authors' code). Old sets are reduced by keeping the first m of their herding order (Alg. 5):
each stored exemplar carries its rank. Order of Alg. 2: train, reduce, then select the new sets.

**Training** (Sec. 2.3, Alg. 3). Task t trains on its data plus every exemplar
(``task_data`` returns the union; the strategy declares ``mixes_tasks``) with the binary
cross-entropy over the output units of the classes seen so far, mean over examples and
units: for a *new* class y the target is ``[y == label]``, for an *old* class the previous
model's sigmoid output on the same input. Units of classes not yet seen are left out, as in
Alg. 3 (``strategy.units=seen``, the default). ``strategy.units=all`` keeps every output, the
classes not seen yet with target 0, as the authors' Theano code (all 100 units) and Mammoth's
``models/icarl.py`` (``get_loss``: targets over all outputs, the old network's sigmoid on the
past classes; read at e75a491) do; the presets that follow those codebases use it
(``seq_mnist_icarl_*``, ``seq_cifar10_icarl_b500``, ``split_cifar100_icarl``).
``strategy.distill_temperature`` T makes the old classes' targets ``sigmoid(z_old / T)``
(default 1, the paper's; van de Ven's code uses T = 2, ``split_mnist_icarl``). The
previous model's outputs come from a frozen copy of the model taken at the task's start, in
eval mode, run in the ``loss`` hook on ``batch.inputs`` under ``no_grad`` (one extra forward
pass per step, only on tasks with old classes), as the authors' code (``func_pred`` on every
batch) and Mammoth (``old_net`` in ``observe``) do; the paper's Alg. 3 stores them once per
task, the same numbers without data augmentation. The copy is dropped at the task's end, so
resume states never hold it. The task-incremental class mask (``batch.allowed``) is not
applied: the sigmoid units are independent and iCaRL's objective spans every seen class; the
evaluation masks the scores to the task's classes.

**Classification** (Sec. 2.1, Alg. 1): nearest mean of exemplars. At the end of each task,
mu_y = the re-normalized mean of the normalized features of class y's exemplars (with the
model as trained); ``predict`` scores a test input by ``-|| phi(x) - mu_y ||`` (argmax = the
nearest mean). No flipped images are added (the authors' CIFAR code averages each exemplar's
features with its horizontal flip's; a flip does not preserve digits and the benchmarks use no
augmentation). A class with no exemplar gets the score :data:`NO_MEAN_SCORE` (-4, below any
distance between unit vectors, which is at most 2): never predicted while another class has a
mean, and the test loss stays finite. **The ``loss`` column of an iCaRL run** is therefore the
cross-entropy of ``softmax(-distances)``, a number on another scale than the network's
test loss of other strategies. Before the first task ends (the initial evaluation, continual
evaluation during task 1) there is no exemplar and ``predict`` returns the network's output.
During a task (continual evaluation) the class means are recomputed from the memory with the
current model at the first ``predict`` after a training step (Mammoth recomputes them in
``forward`` too); the classes of the task being trained have no exemplar yet.

**Classes, old and new, per scenario.** The *new* classes of task t are the labels present in
its training data; *old* ones were seen in an earlier task and are absent from task t's data.
An exemplar set is one (task, label) pair. Split CIFAR-100 (task-incremental; the later
class-incremental Split MNIST): each class belongs to one task, so this is the paper's
algorithm, one set per class. Rotated/Permuted MNIST (domain-incremental): every task holds all
10 labels, so every label is new in every task and there is no old class: the distillation term
is empty and iCaRL reduces to training on the task plus the herded exemplars with the binary
cross-entropy, classified by the nearest mean. Task t's exemplars of a label are herded among
task t's images of that label (10 sets per task, m = floor(K / (10 t)) each), and the class
mean of a label is taken over its exemplars of all tasks.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.errors import ConfigError
from cl_runner.strategies.base import STRATEGIES, Strategy, TaskContext, cost
from cl_runner.strategies.memory import EpisodicMemory
from cl_runner.strategies.replay_schemas import ICaRLConfig, ICaRLUnits
from cl_runner.training.batch import Batch

#: score of a class without exemplars: below every ``-||a - b||`` of unit vectors (>= -2)
NO_MEAN_SCORE = -4.0


@torch.no_grad()
def normalized_features(model: nn.Module, x: torch.Tensor, to_input, batch_size: int
                        ) -> torch.Tensor:
    """L2-normalized ``model.features`` of stored inputs ``x (N, ...)``, float ``(N, D)``, in
    eval mode (the model's mode is restored), ``batch_size`` examples per forward pass. A zero
    feature vector stays zero (``F.normalize``'s eps)."""
    was_training = model.training
    model.eval()
    out = torch.cat([model.features(to_input(x[i : i + batch_size]))
                     for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return F.normalize(out.float(), dim=1)


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """Herding selection (Rebuffi et al. 2017, Alg. 4) of ``min(m, N)`` distinct examples.

    Args:
        features: normalized features ``(N, D)`` of one class's examples.
        m: number of exemplars wanted.

    Returns:
        int64 ``(min(m, N),)``: indices into ``features`` in herding order (the k-th minimizes
        ``|| mu - (phi(x) + sum of the k-1 picked) / k ||`` over the unpicked, mu the mean of
        ``features``; ties go to the lowest index). No host sync: one vectorized distance per
        pick.
    """
    n = len(features)
    m = min(m, n)
    mu = features.mean(0)
    running = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=features.device)
    picks = torch.empty(m, dtype=torch.int64, device=features.device)
    for k in range(1, m + 1):
        dist = (mu - (features + running) / k).norm(dim=1).masked_fill(taken, float("inf"))
        i = dist.argmin()
        picks[k - 1] = i
        taken[i] = True
        running += features[i]
    return picks


def nme_scores(features: torch.Tensor, means: torch.Tensor, has_mean: torch.Tensor
               ) -> torch.Tensor:
    """Nearest-mean-of-exemplars scores (Alg. 1): ``-|| phi(x) - mu_y ||``, float ``(B, C)``.

    Args:
        features: normalized features ``(B, D)``.
        means: normalized class means ``(C, D)`` (rows of classes without mean unused).
        has_mean: bool ``(C,)``: which classes have exemplars; the others score
            :data:`NO_MEAN_SCORE`.
    """
    dist = torch.cdist(features, means.to(features.dtype),
                       compute_mode="donot_use_mm_for_euclid_dist")
    return torch.where(has_mean, -dist, torch.full_like(dist, NO_MEAN_SCORE))


class ExemplarMemory(EpisodicMemory):
    """iCaRL's exemplar sets: an :class:`~cl_runner.strategies.memory.EpisodicMemory` (``x``,
    ``y``, ``task``) grouped by set, plus each exemplar's herding rank.

    Attributes:
        rank: int64 ``(M,)``: position of each exemplar in its set's herding order (0-based),
            so keeping the first m of every set is ``rank < m`` (Alg. 5).
    """

    def __init__(self) -> None:
        super().__init__()
        self.rank: torch.Tensor | None = None

    def add_set(self, x: torch.Tensor, label: int, task: int) -> None:
        """Append one exemplar set of ``task``: ``x (k, ...)`` in herding order, all of class
        ``label``."""
        rank = torch.arange(len(x), device=x.device)
        self.add(x, torch.full_like(rank, label), task)
        self.rank = rank if self.rank is None else torch.cat([self.rank, rank])

    def reduce(self, m: int) -> None:
        """Keep the first ``m`` exemplars of every set (Alg. 5 ReduceExemplarSet)."""
        if self.y is not None:
            keep = self.rank < m
            self.x, self.y, self.task, self.rank = (
                t[keep] for t in (self.x, self.y, self.task, self.rank))

    def update(self, ctx: TaskContext, labels: list[int], m: int, batch_size: int) -> None:
        """Alg. 2's memory update after task ``ctx.task``: reduce every set to ``m`` (Alg. 5),
        then herd (Alg. 4) one set of ``m`` per label in ``labels`` among the task's training
        images of that label, in the features of ``ctx.model`` (``batch_size`` per pass)."""
        self.reduce(m)
        feats = normalized_features(ctx.model, ctx.train_x, ctx.benchmark.to_input, batch_size)
        for label in labels:
            idx = torch.nonzero(ctx.train_y == label).flatten()
            self.add_set(ctx.train_x[idx[herding(feats[idx], m)]], label, ctx.task)

    def per_task(self) -> dict[str, int]:
        """Exemplars held per task (1-based, as a string), tasks holding none left out."""
        counts = [] if self.task is None else torch.bincount(self.task.cpu()).tolist()[1:]
        return {str(t): c for t, c in enumerate(counts, start=1) if c}


@STRATEGIES.register("icarl", config=ICaRLConfig)
class ICaRL(Strategy):
    """iCaRL (see the module docstring). ``stats()`` reports the exemplars per set and how many
    exemplars each task holds at the end.

    Attributes:
        memory: the :class:`ExemplarMemory`.
        num_sets: exemplar sets held (one per (task, label) pair seen).
        seen: bool ``(C,)``: labels seen in the tasks trained so far, or None before task 1.
        class_means: normalized class means ``(C, D)`` (Alg. 1), None before the first task
            ends; ``has_mean`` bool ``(C,)``: which rows are set.
        teacher: the frozen previous model while a task with old classes trains, else None.
        stale: a training step ran since the class means were computed.
    """

    mixes_tasks = True  # task t trains on its data and the exemplars of earlier tasks
    transient_attributes = ("_to_input", "_present", "_units", "_old_units", "_targets")

    def __init__(self, cfg: ICaRLConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        self.memory = ExemplarMemory()
        self.num_sets = 0
        self.seen: torch.Tensor | None = None
        self.class_means: torch.Tensor | None = None
        self.has_mean: torch.Tensor | None = None
        self.teacher: nn.Module | None = None
        self.stale = False
        self.exemplars_per_set: list[int] = []
        self._to_input = None

    def before_task(self, ctx: TaskContext) -> None:
        """Which labels are new (present in the task's data) and old (seen before, absent);
        the loss's units, targets and the frozen previous model when there are old classes."""
        num_classes = ctx.benchmark.num_classes
        self._to_input = ctx.benchmark.to_input
        if self.seen is None:
            self.seen = torch.zeros(num_classes, dtype=torch.bool, device=ctx.device)
        present = torch.bincount(ctx.train_y, minlength=num_classes) > 0
        old = self.seen & ~present
        if ICaRLUnits(self.cfg.units) == ICaRLUnits.all:
            units = torch.arange(num_classes, device=ctx.device)  # future classes: target 0
        else:
            units = torch.nonzero(self.seen | present).flatten()  # seen classes, ascending
        self._present = present
        self._units = units
        self._old_units = old[units]  # (K,)
        self._targets = torch.eye(num_classes, device=ctx.device)[:, units]  # label -> (K,)
        self.teacher = None
        if bool(old.any()):
            self.teacher = copy.deepcopy(ctx.model).eval().requires_grad_(False)

    def task_data(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's data followed by every exemplar (Alg. 3, line 1)."""
        if len(self.memory) == 0:
            return ctx.train_x, ctx.train_y
        return torch.cat([ctx.train_x, self.memory.x]), torch.cat([ctx.train_y, self.memory.y])

    def loss(self, batch: Batch, output: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """iCaRL's binary cross-entropy with distillation (Alg. 3), mean over the batch and
        the units of the seen classes, or of every output with ``strategy.units=all`` (see
        the module docstring); float scalar."""
        self.stale = True
        logits = output.index_select(1, self._units)
        target = self._targets[batch.y]
        if self.teacher is not None:
            with torch.no_grad():
                old_logits = self.teacher(batch.inputs).index_select(1, self._units)
                if self.cfg.distill_temperature != 1.0:
                    old_logits = old_logits / self.cfg.distill_temperature
                old = torch.sigmoid(old_logits)
            target = torch.where(self._old_units, old.to(target.dtype), target)
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))

    def after_training(self, ctx: TaskContext) -> None:
        """Alg. 2 after training: m = K // #sets, reduce the old sets (Alg. 5), herd one set
        per label of the task (Alg. 4), then the class means (Alg. 1).

        Raises:
            ConfigError: ``memory_size`` is smaller than the number of exemplar sets.
        """
        self.teacher = None
        labels = torch.nonzero(self._present).flatten().tolist()
        sets = self.num_sets + len(labels)
        m = self.cfg.memory_size // sets
        if m < 1:
            raise ConfigError(f"strategy.memory_size={self.cfg.memory_size} is smaller than the "
                              f"{sets} exemplar sets of task {ctx.task} (one per class and task): "
                              f"iCaRL needs at least one exemplar per set")
        self.memory.update(ctx, labels, m, self.cfg.feature_batch_size)
        self.num_sets = sets
        self.seen = self.seen | self._present
        self.exemplars_per_set.append(m)
        self.compute_class_means(ctx.model, ctx.benchmark.to_input, ctx.benchmark.num_classes)

    def compute_class_means(self, model: nn.Module, to_input, num_classes: int) -> None:
        """Class means of the exemplars with ``model`` (Alg. 1, lines 1-3): for every label,
        the re-normalized mean of its exemplars' normalized features, over all tasks."""
        feats = normalized_features(model, self.memory.x, to_input, self.cfg.feature_batch_size)
        y = self.memory.y
        sums = torch.zeros(num_classes, feats.shape[1], device=feats.device).index_add_(0, y, feats)
        counts = torch.bincount(y, minlength=num_classes)
        self.class_means = F.normalize(sums / counts.clamp(min=1).unsqueeze(1), dim=1)
        self.has_mean = counts > 0
        self.stale = False

    def predict(self, model: nn.Module, inputs: torch.Tensor, task: int | None) -> torch.Tensor:
        """Nearest mean of exemplars (Alg. 1), ``(B, C)`` scores ``-distance``; the network's
        output before the first task ends (no exemplar yet). ``task`` is not used."""
        if self.class_means is None:
            return model(inputs)
        if self.stale and self._to_input is not None:  # mid-task (continual evaluation)
            self.compute_class_means(model, self._to_input, self.class_means.shape[0])
        return nme_scores(F.normalize(model.features(inputs).float(), dim=1),
                          self.class_means, self.has_mean)

    def stats(self) -> dict[str, Any]:
        return {"memory_size": len(self.memory), "exemplars_per_set": self.exemplars_per_set,
                "memory_per_task": self.memory.per_task()}

    def parameter_cost(self, model: nn.Module, num_tasks: int) -> dict[str, Any]:
        """Task k: its exemplars held at the end (input as stored, label, task id; ranks not
        counted: they are their position in the set); state: the class means."""
        per_task = self.memory.floats_by_task(num_tasks)
        means = 0.0 if self.class_means is None else float(self.class_means.numel())
        return cost(model, per_task, means,
                    "task_floats: the exemplars of task k held at the end (input, label, task "
                    "id; memory_size in all); state_floats: the class means (classes x features)")
