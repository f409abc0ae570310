"""iCaRL (Rebuffi et al. 2017) against hand computations: herding (Alg. 4), memory reduction
(Alg. 5), the binary cross-entropy with distillation targets (Alg. 3), nearest-mean-of-exemplars
classification (Alg. 1), and the data a task trains on."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cl_runner.errors import ConfigError
from cl_runner.strategies.base import TaskContext
from cl_runner.strategies.icarl import NO_MEAN_SCORE, ICaRL, herding
from cl_runner.strategies.schemas import ICaRLConfig
from cl_runner.training.batch import Batch

CPU = torch.device("cpu")

#: four unit vectors of one class. mean mu = (0.55, 0.25). Herding (Alg. 4), k-th pick
#: argmin_x |mu - (x + sum of picks) / k|:
#:   k=1: |mu - x| = 0.5148 (p0), 0.9301 (p1), 0.5523 (p2), 1.0512 (p3)         -> p0
#:   k=2: |mu - (x + p0)/2| = 0.2550 (p1), 0.2915 (p2), 0.6964 (p3)             -> p1
#:   k=3: |mu - (x + p0 + p1)/3| = 0.3504 (p2), 0.1843 (p3)                     -> p3
#:   k=4: p2.   (Nearest to the mean first would be p0, p2, p1, p3.)
POINTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, -0.8]])
HERDING_ORDER = [0, 1, 3, 2]
#: a second class: mu = (-0.8, 0.0667); k=1: |mu - x| = 0.760 (q0), 0.211 (q1), 0.667 (q2)
#: -> q1; k=2: |mu - (x + q1)/2| = 0.333 (q0), 0.380 (q2) -> q0; then q2
OTHER = torch.tensor([[-0.6, 0.8], [-1.0, 0.0], [-0.8, -0.6]])


class FeatureNet(nn.Module):
    """``features(x) = x`` (2-D inputs are their own features), ``head``: Linear(2, C)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(2, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Bench:
    """What iCaRL reads from a benchmark: ``num_classes`` and ``to_input``."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def ctx(task: int, model: nn.Module, x, y, num_classes: int) -> TaskContext:
    return TaskContext(task, x, torch.tensor(y), model, Bench(num_classes), CPU,
                       torch.Generator().manual_seed(0))


def run_task(icarl: ICaRL, c: TaskContext) -> None:
    """A task's boundary hooks without training steps (the model stays as it is)."""
    icarl.before_task(c)
    icarl.task_data(c)
    icarl.after_training(c)


def test_herding_picks_the_hand_computed_order():
    assert herding(POINTS, 10).tolist() == HERDING_ORDER  # all of them, m > N
    assert herding(POINTS, 3).tolist() == HERDING_ORDER[:3]
    assert herding(OTHER, 3).tolist() == [1, 0, 2]


def test_memory_is_split_evenly_and_reduced_to_the_herding_prefix():
    """K=4. Task 1 (classes 0, 1): 2 sets, m=2: the first 2 of each herding order. Task 2
    (classes 2, 3, class-incremental): 4 sets, m=1: each old set keeps its first pick."""
    model = FeatureNet(4)
    icarl = ICaRL(ICaRLConfig(memory_size=4))
    x1 = torch.cat([POINTS, OTHER])
    run_task(icarl, ctx(1, model, x1, [0, 0, 0, 0, 1, 1, 1], 4))
    mem = icarl.memory
    assert mem.x.tolist() == [POINTS[0].tolist(), POINTS[1].tolist(),
                              OTHER[1].tolist(), OTHER[0].tolist()]
    assert mem.y.tolist() == [0, 0, 1, 1] and mem.rank.tolist() == [0, 1, 0, 1]

    x2 = torch.tensor([[0.0, -1.0], [0.0, -0.5], [1.0, 1.0]])
    run_task(icarl, ctx(2, model, x2, [2, 2, 3], 4))
    assert mem.y.tolist() == [0, 1, 2, 3] and mem.task.tolist() == [1, 1, 2, 2]
    assert mem.x[:2].tolist() == [POINTS[0].tolist(), OTHER[1].tolist()]  # the prefixes
    assert icarl.exemplars_per_set == [2, 1] and len(mem) == 4
    assert icarl.stats()["memory_per_task"] == {"1": 2, "2": 2}

    with pytest.raises(ConfigError, match="memory_size=4 is smaller than the 5"):
        run_task(icarl, ctx(3, model, x2[:1], [1], 4))


def test_domain_incremental_sets_per_task_and_class_means_over_all_tasks():
    """Every task holds the same labels (Rotated/Permuted MNIST): one set per (task, label);
    the mean of a label is over its exemplars of every task; no old class, no teacher."""
    model = FeatureNet(2)
    icarl = ICaRL(ICaRLConfig(memory_size=4))
    run_task(icarl, ctx(1, model, torch.cat([POINTS, OTHER]), [0, 0, 0, 0, 1, 1, 1], 2))
    x2 = torch.tensor([[0.0, -1.0], [-0.6, -0.8]])
    c2 = ctx(2, model, x2, [0, 1], 2)
    icarl.before_task(c2)
    assert icarl.teacher is None  # every label of task 2 is new to it
    icarl.after_training(c2)
    assert icarl.memory.y.tolist() == [0, 1, 0, 1] and icarl.memory.task.tolist() == [1, 1, 2, 2]
    # label 0: p0 (task 1) and (0, -1) (task 2): mean (0.5, -0.5), normalized
    s = 1 / math.sqrt(2)
    assert icarl.class_means[0].tolist() == pytest.approx([s, -s])
    # label 1: q1 = (-1, 0) and (-0.6, -0.8): mean (-0.8, -0.4) / |.|
    assert icarl.class_means[1].tolist() == pytest.approx([-0.8 / math.sqrt(0.8), -0.4 / math.sqrt(0.8)])


def test_nearest_mean_of_exemplars_scores_the_hand_computed_distances():
    """Exemplars of class 0: p0 = (1, 0), p1 = (0, 1) -> mean (1, 1)/sqrt(2); class 1: (-1, 0);
    class 2: none. Scores = -distance to each mean, NO_MEAN_SCORE for class 2."""
    model = FeatureNet(3)
    icarl = ICaRL(ICaRLConfig(memory_size=4))  # 2 sets: m = 2
    inputs = torch.tensor([[0.6, 0.8], [-1.6, -1.2]])  # the second normalizes to (-0.8, -0.6)
    assert torch.equal(icarl.predict(model, inputs, None), model(inputs))  # before any task
    run_task(icarl, ctx(1, model, torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
                        [0, 0, 1], 3))
    s = 1 / math.sqrt(2)
    expected = [[-math.hypot(0.6 - s, 0.8 - s), -math.hypot(1.6, 0.8), NO_MEAN_SCORE],
                [-math.hypot(-0.8 - s, -0.6 - s), -math.hypot(0.2, -0.6), NO_MEAN_SCORE]]
    scores = icarl.predict(model, inputs, None)
    assert scores.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]
    assert scores.argmax(1).tolist() == [0, 1]


#: the batch of the loss tests: x_a of class 2 (task 2's data), an exemplar x_b of class 0
XA, XB = [0.6, 0.8], [1.0, 0.0]


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def bce(z: float, t: float) -> float:
    """Binary cross-entropy of logit z against target t, by hand."""
    return -(t * math.log(sig(z)) + (1 - t) * math.log(1 - sig(z)))


def icarl_at_task_two(cfg: ICaRLConfig) -> tuple[ICaRL, FeatureNet, TaskContext]:
    """Task 1 (classes 0, 1) trained with the old weights (old model: z0 = x1,
    z1 = x2 + 0.5), task 2 (class 2) started, then the model moved on to the new weights
    (z0 = 0.5 x1 - x2 + 0.25, z1 = 2 x1, z2 = x1 + x2 - 0.5, z3 = -7 x1 + 9 x2 + 4); the
    teacher keeps the task-1 weights. Unit 3 (class 3) is never seen."""
    model = FeatureNet(4)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5], [3.0, 3.0]]))
        model.head.bias.copy_(torch.tensor([0.0, 0.5, 0.0, 1.0]))
    icarl = ICaRL(cfg)
    run_task(icarl, ctx(1, model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 1], 4))
    c2 = ctx(2, model, torch.tensor([XA]), [2], 4)
    icarl.before_task(c2)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0], [-7.0, 9.0]]))
        model.head.bias.copy_(torch.tensor([0.25, 0.0, -0.5, 4.0]))
    return icarl, model, c2


def new_logits(x1: float, x2: float) -> list[float]:
    """The moved model's logits z0..z3 (see :func:`icarl_at_task_two`)."""
    return [0.5 * x1 - x2 + 0.25, 2 * x1, x1 + x2 - 0.5, -7 * x1 + 9 * x2 + 4]


def icarl_loss(icarl: ICaRL, model: nn.Module) -> torch.Tensor:
    inputs = torch.tensor([XA, XB])
    batch = Batch(inputs, torch.tensor([2, 0]), 2, 1, inputs=inputs)
    return icarl.loss(batch, model(inputs), model)


def test_loss_is_the_binary_cross_entropy_with_the_previous_models_targets():
    """Task 1 saw classes 0 and 1, task 2 brings class 2; unit 3 is never seen. The loss of a
    batch (x_a of class 2, an exemplar x_b of class 0) is the mean over 2 examples x 3 units
    of -(t log s(z) + (1 - t) log(1 - s(z))), z the new model's logits, t the old model's
    sigmoid on units 0, 1 and [label == 2] on unit 2."""
    icarl, model, c2 = icarl_at_task_two(ICaRLConfig(memory_size=4))
    x_train, y_train = icarl.task_data(c2)
    assert y_train.tolist() == [2, 0, 1]  # the task's data, then the exemplars

    terms = []
    for (x1, x2), label in ((XA, 2), (XB, 0)):
        targets = [sig(x1), sig(x2 + 0.5), float(label == 2)]
        terms += [bce(z, t) for z, t in zip(new_logits(x1, x2)[:3], targets, strict=True)]
    expected = sum(terms) / 6

    got = icarl_loss(icarl, model)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the distillation term matters: one-hot targets on every unit give another value
    one_hot = sum(bce(z, float(i == lab)) for (x1, x2), lab in ((XA, 2), (XB, 0))
                  for i, z in enumerate(new_logits(x1, x2)[:3])) / 6
    assert abs(expected - one_hot) > 0.05
    got.backward()
    assert model.head.weight.grad[3].abs().sum() == 0  # unit 3 (never seen) is not trained
    assert all(p.grad is None for p in icarl.teacher.parameters())

    icarl.after_training(c2)
    assert icarl.teacher is None  # not kept beyond its task (never in a resume state)


def test_units_all_adds_the_unseen_classes_with_target_zero():
    """``strategy.units=all`` (Mammoth's and the authors' code): the same batch as above, but
    the mean runs over 2 examples x 4 units, unit 3 (class 3, not seen yet) with target 0 and
    new-model logit z3 = -7 x1 + 9 x2 + 4; its weights now get a gradient."""
    icarl, model, _ = icarl_at_task_two(ICaRLConfig(memory_size=4, units="all"))
    terms = []
    for (x1, x2), label in ((XA, 2), (XB, 0)):
        targets = [sig(x1), sig(x2 + 0.5), float(label == 2), 0.0]
        terms += [bce(z, t) for z, t in zip(new_logits(x1, x2), targets, strict=True)]
    got = icarl_loss(icarl, model)
    assert got.item() == pytest.approx(sum(terms) / 8, rel=1e-6)
    got.backward()
    assert model.head.weight.grad[3].abs().sum() > 0  # the unseen unit is pushed towards 0


def test_distill_temperature_softens_the_old_classes_targets():
    """``distill_temperature=2`` (van de Ven's code): the same batch as the seen-units test,
    the old units' targets sigmoid(z_old / 2) instead of sigmoid(z_old)."""
    icarl, model, _ = icarl_at_task_two(ICaRLConfig(memory_size=4, distill_temperature=2.0))
    terms = []
    for (x1, x2), label in ((XA, 2), (XB, 0)):
        targets = [sig(x1 / 2), sig((x2 + 0.5) / 2), float(label == 2)]  # old model / T
        terms += [bce(z, t) for z, t in zip(new_logits(x1, x2)[:3], targets, strict=True)]
    assert icarl_loss(icarl, model).item() == pytest.approx(sum(terms) / 6, rel=1e-6)
    with pytest.raises(ConfigError, match="distill_temperature"):
        ICaRLConfig(distill_temperature=0.0).validate()


@pytest.mark.parametrize(("preset", "units"), [
    ("split_mnist_icarl", "seen"),  # van de Ven's compare.py: neg_samples "all-so-far"
    ("seq_mnist_icarl_b200", "all"), ("seq_mnist_icarl_b500", "all"),  # Mammoth's get_loss
    ("seq_cifar10_icarl_b500", "all"),
    ("split_cifar100_icarl", "all"),  # the authors' Theano code: targets over all 100 units
])
def test_presets_use_their_sources_units(preset, units):
    from tests.conftest import compose_run
    run = compose_run([f"+experiment={preset}"])
    assert run.strategy.units.value == units
    # van de Ven's sigmoid(scores / KD_temp), KD_temp 2; the others a plain sigmoid
    assert run.strategy.distill_temperature == (2.0 if preset == "split_mnist_icarl" else 1.0)
    assert compose_run(["strategy=icarl"]).strategy.units.value == "seen"  # the schema default


def test_class_means_follow_the_model_during_a_task():
    """Continual evaluation mid-task: after a training step the means are recomputed with the
    current model at the next predict."""
    model = FeatureNet(2)
    icarl = ICaRL(ICaRLConfig(memory_size=2))
    c = ctx(1, model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 1], 2)
    run_task(icarl, c)
    icarl.before_task(ctx(2, model, torch.tensor([[1.0, 0.0]]), [0], 2))
    icarl.stale = True  # as the loss hook leaves it
    model.features = lambda x: -x  # the representation changed  # type: ignore[method-assign]
    scores = icarl.predict(model, torch.tensor([[1.0, 0.0]]), None)  # feature (-1, 0)
    assert icarl.class_means[0].tolist() == pytest.approx([-1.0, 0.0])
    assert scores[0, 0].item() == pytest.approx(0.0, abs=1e-6)
