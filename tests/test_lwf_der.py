"""LwF and DER/DER++: their losses on tiny models against values computed by hand, the LwF
teacher (eval mode, kept across a resume), DER's logits stored at insertion, and DER++
forgetting less than naive fine-tuning on real MNIST."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from cl_runner.experiment import run_experiment
from cl_runner.strategies.base import TaskContext
from cl_runner.strategies.der import DER, DERPP
from cl_runner.strategies.lwf import LwF
from cl_runner.strategies.memory import ReservoirBuffer
from cl_runner.strategies.schemas import DERConfig, DERPPConfig, LwFConfig
from cl_runner.training.batch import Batch
from cl_runner.training.steps import classification_loss
from tests.conftest import FloatBenchmark, compose_run

CPU = torch.device("cpu")


def ctx(task: int, model: nn.Module, masks: torch.Tensor | None = None) -> TaskContext:
    x, y = torch.zeros(1, 1, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64)
    return TaskContext(task, x, y, model, FloatBenchmark(masks), CPU,
                       torch.Generator().manual_seed(0))


def linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    model = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weight))
        model.bias.copy_(torch.tensor(bias))
    return model


def step(strategy, model: nn.Module, x: list[list[int]], y: list[int], task: int):
    """One step as the loop runs it: batch -> train_batch -> inputs -> forward -> loss."""
    batch = Batch(torch.tensor(x, dtype=torch.uint8), torch.tensor(y), task, len(y))
    batch = strategy.train_batch(batch) if strategy.overrides("train_batch") else batch
    batch.inputs = batch.x.float()
    output = model(batch.inputs)
    return batch, output, strategy.loss(batch, output, model)


def soft_ce(teacher: list[float], student: list[float], temperature: float) -> float:
    """-sum_i p_i log q_i with p = softmax(teacher / T), q = softmax(student / T), by hand."""
    et = [math.exp(v / temperature) for v in teacher]
    es = [math.exp(v / temperature) for v in student]
    return -sum(a / sum(et) * math.log(b / sum(es)) for a, b in zip(et, es, strict=True))


# ---------------------------------------------------------------- LwF


def test_lwf_loss_is_cross_entropy_plus_alpha_times_the_soft_target_cross_entropy():
    """Model z = W x + b on inputs 0 and 1. Teacher (after task 1): W = (1, 0, -1), b = (2, 0, -2):
    logits (2, 0, -2) and (3, 0, -3). Student: W = (0, 1, 0), b = (0, 2, 0): logits (0, 2, 0)
    and (0, 3, 0). T = 2: teacher probabilities softmax((1, 0, -1)) and softmax((1.5, 0, -1.5)),
    student log-probabilities log softmax((0, 1, 0)) and log softmax((0, 1.5, 0)); the
    distillation term is the mean over the 2 examples of -sum p log q."""
    lwf = LwF(LwFConfig(alpha=0.7, temperature=2.0))
    teacher = linear([[1.0], [0.0], [-1.0]], [2.0, 0.0, -2.0])
    lwf.before_task(ctx(1, teacher))
    lwf.after_training(ctx(1, teacher))
    student = linear([[0.0], [1.0], [0.0]], [0.0, 2.0, 0.0])
    lwf.before_task(ctx(2, student))

    batch, output, loss = step(lwf, student, [[0], [1]], [0, 2], task=2)
    e = math.e
    # cross-entropy by hand: labels 0 and 2 of logits (0, 2, 0) and (0, 3, 0)
    ce = (math.log(2 + e**2) + math.log(2 + e**3)) / 2
    # softened: p1 = (e, 1, 1/e) / (e + 1 + 1/e), log q1 = (0, 1, 0) - log(2 + e), and so on
    z1, z2 = e + 1 + 1 / e, e**1.5 + 1 + e**-1.5
    term1 = -(e / z1 * (0 - math.log(2 + e)) + 1 / z1 * (1 - math.log(2 + e))
              + (1 / e) / z1 * (0 - math.log(2 + e)))
    term2 = -(e**1.5 / z2 * (0 - math.log(2 + e**1.5)) + 1 / z2 * (1.5 - math.log(2 + e**1.5))
              + e**-1.5 / z2 * (0 - math.log(2 + e**1.5)))
    assert term1 == pytest.approx(soft_ce([2, 0, -2], [0, 2, 0], 2.0))  # the helper agrees
    distill = (term1 + term2) / 2
    assert loss.detach().item() == pytest.approx(ce + 0.7 * distill, rel=1e-6)
    assert (loss - classification_loss(output, batch.y, None)).detach().item() == pytest.approx(
        0.7 * distill, rel=1e-5)
    assert lwf.stats() == {"teacher_task": 1}


def test_lwf_task_one_is_plain_cross_entropy():
    lwf = LwF(LwFConfig())
    model = linear([[1.0], [0.0], [-1.0]], [2.0, 0.0, -2.0])
    lwf.before_task(ctx(1, model))
    batch, output, loss = step(lwf, model, [[0], [1]], [0, 2], task=1)
    assert loss.detach().item() == classification_loss(output, batch.y, None).detach().item()


def test_lwf_distills_each_old_task_head_with_its_own_softmax_on_task_incremental_masks():
    """6 classes, tasks of 2 classes: at task 3 the old heads are {0, 1} and {2, 3}; units 4, 5
    (the current task) are not distilled. Input 0: logits are the biases. Teacher biases
    (1, -1, 0, 2, 9, 9), student (0, 0, 1, 1, -9, 5), T = 1: the term is the sum over the two
    heads of the 2-way soft cross-entropies."""
    masks = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]).bool()
    lwf = LwF(LwFConfig(alpha=1.0, temperature=1.0))
    teacher = linear([[0.0]] * 6, [1.0, -1.0, 0.0, 2.0, 9.0, 9.0])
    lwf.after_training(ctx(2, teacher, masks))
    student = linear([[0.0]] * 6, [0.0, 0.0, 1.0, 1.0, -9.0, 5.0])
    lwf.before_task(ctx(3, student, masks))
    batch, output, loss = step(lwf, student, [[0]], [4], task=3)
    batch.allowed = masks[2]  # as the loop sets it; the CE then ranges over units 4, 5
    loss = lwf.loss(batch, output, student)
    e = math.e
    ce = math.log(e**-9 + e**5) - (-9)  # label 4 among units 4, 5
    # head {0, 1}: p = (e, 1/e) / (e + 1/e), q = (1/2, 1/2): -sum p log q = log 2
    # head {2, 3}: p = (1, e^2) / (1 + e^2), q = (1/2, 1/2): log 2
    assert loss.detach().item() == pytest.approx(ce + 2 * math.log(2), rel=1e-6)


class ClassILBenchmark(FloatBenchmark):
    """A class-incremental split as LwF sees it: no training masks, the tasks' class table."""

    scenario = "class_incremental"

    def __init__(self, task_masks: torch.Tensor) -> None:
        super().__init__(None)
        self.task_masks = task_masks


#: 6 classes in tasks of 2; teacher biases (1, -1, 0, 2, 9, 9), student (0, 0, 1, 1, -9, 5)
TEACHER_BIAS = [1.0, -1.0, 0.0, 2.0, 9.0, 9.0]
STUDENT_BIAS = [0.0, 0.0, 1.0, 1.0, -9.0, 5.0]


def class_il_task_three_loss(cfg: LwFConfig) -> float:
    """LwF's loss at task 3 of a 6-class class-incremental split (one head, no masks) on one
    example of class 4, the teacher copied after task 2 (constant logits TEACHER_BIAS), the
    student's logits STUDENT_BIAS."""
    task_masks = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0],
                               [0, 0, 0, 0, 1, 1]]).bool()
    lwf = LwF(cfg)
    teacher = linear([[0.0]] * 6, TEACHER_BIAS)
    lwf.after_training(TaskContext(2, torch.zeros(1, 1, dtype=torch.uint8),
                                   torch.zeros(1, dtype=torch.int64), teacher,
                                   ClassILBenchmark(task_masks), CPU, torch.Generator()))
    student = linear([[0.0]] * 6, STUDENT_BIAS)
    lwf.before_task(TaskContext(3, torch.zeros(1, 1, dtype=torch.uint8),
                                torch.zeros(1, dtype=torch.int64), student,
                                ClassILBenchmark(task_masks), CPU, torch.Generator()))
    _, _, loss = step(lwf, student, [[0]], [4], task=3)
    return loss.detach().item()


#: the cross-entropy of class 4 over all 6 units (no mask)
CE_TASK_THREE = -math.log(math.exp(-9) / sum(math.exp(v) for v in STUDENT_BIAS))


def test_lwf_distills_the_old_classes_with_one_softmax_on_class_incremental_splits():
    """6 classes, tasks of 2, class-incremental (one head, no masks): at task 3 the teacher's
    softmax and the student's range over the old classes {0, 1, 2, 3} together (Mammoth's
    class-IL LwF); units 4, 5 (the current task's, never trained by the teacher) are not
    distilled. T = 1; the cross-entropy is over all 6 units (no mask)."""
    got = class_il_task_three_loss(LwFConfig(alpha=1.0, temperature=1.0))
    want = CE_TASK_THREE + soft_ce(TEACHER_BIAS[:4], STUDENT_BIAS[:4], 1.0)
    assert got == pytest.approx(want, rel=1e-6)


def test_lwf_distill_classes_all_distills_every_output_on_class_incremental_splits():
    """The split above with ``distill_classes=all`` (van de Ven's code, every class active):
    one softmax over all 6 units for teacher and student, the current task's units 4, 5
    (teacher biases 9, 9) included, so the term differs from the old-classes one."""
    got = class_il_task_three_loss(LwFConfig(alpha=1.0, temperature=1.0, distill_classes="all"))
    want = CE_TASK_THREE + soft_ce(TEACHER_BIAS, STUDENT_BIAS, 1.0)
    assert got == pytest.approx(want, rel=1e-6)
    previous = CE_TASK_THREE + soft_ce(TEACHER_BIAS[:4], STUDENT_BIAS[:4], 1.0)
    assert abs(want - previous) > 1.0


def test_lwf_presets_distill_as_their_sources():
    assert compose_run(["+experiment=split_mnist_lwf"]).strategy.distill_classes.value == "all"
    assert compose_run(["+experiment=seq_mnist_lwf"]).strategy.distill_classes.value == "previous"
    assert compose_run(["strategy=lwf"]).strategy.distill_classes.value == "previous"


def test_lwf_teacher_is_frozen_in_eval_mode_and_leaves_its_batchnorm_statistics_alone():
    """A teacher with BatchNorm and dropout: the same batch gives the same loss twice (train
    mode would drop units at random and normalize with the batch's statistics), its running
    statistics do not move, and it gets no gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 4))
    model.train()
    lwf = LwF(LwFConfig())
    lwf.before_task(ctx(1, model))
    lwf.after_training(ctx(1, model))
    lwf.before_task(ctx(2, model))
    running = lwf.teacher[1].running_mean.clone()
    batch = Batch(torch.randint(0, 255, (5, 3), dtype=torch.uint8), torch.tensor([0, 1, 2, 3, 0]),
                  2, 5)
    batch.inputs = batch.x.float()
    output = model(batch.inputs).detach()
    first, second = lwf.loss(batch, output, model), lwf.loss(batch, output, model)
    assert first.detach().item() == second.detach().item()
    assert torch.equal(lwf.teacher[1].running_mean, running)
    assert not lwf.teacher.training and model.training
    assert all(not p.requires_grad for p in lwf.teacher.parameters())


def test_lwf_teacher_survives_a_resume_state_round_trip():
    """The teacher is saved whole with the strategy's state: a fresh strategy restored from
    the saved bytes has the same weights, eval mode and loss; one without it would give the
    cross-entropy alone."""
    lwf = LwF(LwFConfig(alpha=0.5, temperature=3.0))
    teacher = linear([[1.0], [0.0], [-1.0]], [2.0, 0.0, -2.0])
    lwf.after_training(ctx(1, teacher))
    student = linear([[0.0], [1.0], [0.0]], [0.0, 2.0, 0.0])
    lwf.before_task(ctx(2, student))
    _, _, loss = step(lwf, student, [[0], [1]], [0, 2], task=2)

    buf = io.BytesIO()
    torch.save(lwf.state_dict(), buf)
    buf.seek(0)
    fresh = LwF(LwFConfig(alpha=0.5, temperature=3.0))
    fresh.load_state_dict(torch.load(buf, weights_only=False))
    fresh.before_task(ctx(2, student))
    assert fresh.teacher_task == 1 and not fresh.teacher.training
    assert torch.equal(fresh.teacher.weight, teacher.weight)
    batch, output, resumed = step(fresh, student, [[0], [1]], [0, 2], task=2)
    assert resumed.detach().item() == loss.detach().item()
    assert resumed.detach().item() > classification_loss(output, batch.y, None).detach().item() + 0.1


# ---------------------------------------------------------------- DER / DER++

#: z = (x, -x + 0.5): current example x = 1 -> (1, -0.5); buffer examples x = 2 -> (2, -1.5)
#: stored with logits (0.5, 0.5) and label 1, x = 0 -> (0, 0.5) stored with (1, -1), label 0
WEIGHT, BIAS = [[1.0], [-1.0]], [0.0, 0.5]


def filled(strategy_cls, cfg):
    strategy = strategy_cls(cfg)
    model = linear(WEIGHT, BIAS)
    strategy.before_task(ctx(2, model))
    strategy.buffer.add(torch.tensor([[2], [0]], dtype=torch.uint8), torch.tensor([1, 0]), 1,
                        torch.tensor([[0.5, 0.5], [1.0, -1.0]]))
    return strategy, model


@pytest.mark.parametrize("plus", [False, True])
def test_der_loss_equals_the_hand_computed_value(plus):
    """The buffer holds exactly 2 examples and a buffer batch is 2: every draw holds both (in
    some order), so the value does not depend on the draw. CE(current) = log(1 + e^-1.5);
    MSE = ((2 - 0.5)^2 + (-1.5 - 0.5)^2 + (0 - 1)^2 + (0.5 + 1)^2) / 4 = 9.5 / 4;
    DER++'s CE of the buffer batch = (log(1 + e^3.5) + log(1 + e^0.5)) / 2."""
    alpha, beta = 0.3, 0.7
    if plus:
        strategy, model = filled(DERPP, DERPPConfig(memory_size=2, replay_batch_size=2,
                                                    alpha=alpha, beta=beta))
    else:
        strategy, model = filled(DER, DERConfig(memory_size=2, replay_batch_size=2, alpha=alpha))
    batch, _, loss = step(strategy, model, [[1]], [0], task=2)
    assert len(batch.y) == (5 if plus else 3) and batch.num_current == 1
    expected = math.log(1 + math.exp(-1.5)) + alpha * 9.5 / 4
    if plus:
        expected += beta * (math.log(1 + math.exp(3.5)) + math.log(1 + math.exp(0.5))) / 2
    assert loss.detach().item() == pytest.approx(expected, rel=1e-6)


def test_der_stores_the_logits_of_insertion_and_replays_them_unchanged():
    """The current example enters the buffer with the logits of the step's forward pass;
    after the weights change, the buffer and the replayed ``batch.logits`` still hold them."""
    strategy = DER(DERConfig(memory_size=10, replay_batch_size=5))
    model = linear(WEIGHT, BIAS)
    strategy.before_task(ctx(1, model))
    step(strategy, model, [[1]], [0], task=1)  # empty buffer: no replay; then x = 1 stored
    assert torch.equal(strategy.buffer.logits[:1], torch.tensor([[1.0, -0.5]]))
    assert not strategy.buffer.logits.requires_grad
    with torch.no_grad():
        model.weight.mul_(3.0)
        model.bias.add_(1.0)
    batch, output, _ = step(strategy, model, [[4]], [1], task=1)
    assert torch.equal(batch.x[1:], torch.tensor([[1]], dtype=torch.uint8))
    assert torch.equal(batch.logits, torch.tensor([[1.0, -0.5]]))  # not the new (4, -1.5)
    assert torch.equal(output[1], torch.tensor([4.0, -1.5]))
    assert torch.equal(strategy.buffer.logits[:2], torch.tensor([[1.0, -0.5], [13.0, -10.5]]))


def test_reservoir_logits_stay_in_the_slots_of_their_examples():
    """50 items through 10 slots in batches of 7 (slot collisions within a batch): each held
    example's stored logits are its own (item id in both columns)."""
    buffer = ReservoirBuffer(10, torch.Generator().manual_seed(3))
    for start in range(0, 50, 7):
        ids = torch.arange(start, min(start + 7, 50))
        buffer.add(ids.to(torch.uint8).view(-1, 1), ids, 1, ids.float().view(-1, 1).repeat(1, 2))
    assert buffer.seen == 50 and buffer.y[:10].max() > 10  # later items replaced earlier ones
    assert torch.equal(buffer.logits[:10], buffer.y[:10].float().view(-1, 1).repeat(1, 2))
    assert torch.equal(buffer.x[:10, 0].long(), buffer.y[:10])
    with pytest.raises(ValueError, match="logits"):
        buffer.add(torch.zeros(1, 1, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), 1)


@pytest.mark.usefixtures("mnist_small_test_set")
def test_derpp_forgets_less_than_naive_on_real_permuted_mnist(tmp_path, mnist_root):
    """3 Permuted MNIST tasks of 1,000 images (batch 10), the first 1,000 test images: DER++
    keeps more of tasks 1 and 2 than naive fine-tuning."""
    common = ["benchmark=permuted_mnist", "benchmark.num_tasks=3",
              "benchmark.train_samples_per_task=1000", "progress=false", "hardware=cpu",
              "hardware.num_threads=1", f"data.root={mnist_root}"]
    naive = run_experiment(compose_run(common), tmp_path / "naive")
    derpp = run_experiment(compose_run(common + ["strategy=derpp"]), tmp_path / "derpp")
    assert derpp["forgetting"] < naive["forgetting"] - 0.05
    assert derpp["average_accuracy"] > naive["average_accuracy"]
