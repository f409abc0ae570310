"""The strategy interface of the one loop: the Batch and the loss hook (one forward pass), the
predict hook and the one evaluation, the scenario's rule on task ids at test time, and strategy
state with its own ``state_dict`` (docs/design.md, principles 1 and 2)."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cl_runner.data.benchmark import Benchmark
from cl_runner.strategies.base import Strategy
from cl_runner.training.batch import Batch
from cl_runner.training.evaluate import Evaluator
from cl_runner.training.loop import train_sequence


class TinyBenchmark(Benchmark):
    """Two tasks of 4-pixel images, 4 classes; task-incremental when ``masks`` is given."""

    input_shape = (1, 2, 2)
    num_classes = 4

    def __init__(self, task_incremental: bool = False) -> None:  # no cfg: set by hand
        self.name, self.num_tasks, self.device = "tiny", 2, torch.device("cpu")
        gen = torch.Generator().manual_seed(0)
        self.data = [(torch.randint(0, 256, (12, 1, 2, 2), generator=gen, dtype=torch.uint8),
                      torch.tensor([0, 1, 2, 3] * 3) if t == 0 else torch.tensor([3, 3, 0, 1] * 3))
                     for t in range(2)]
        self.masks = (torch.tensor([[True, True, False, False], [False, False, True, True]])
                      if task_incremental else None)
        if task_incremental:
            self.data = [(x, y % 2 + 2 * t) for t, (x, y) in enumerate(self.data)]
            self.scenario = "task_incremental"

    def train_data(self, task):
        return self.data[task - 1]

    def test_data(self, task):
        return self.data[task - 1]

    def class_masks(self, split):
        return self.masks


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 4))


def train(bench, model, strategy, lr=0.1):
    return train_sequence(bench, model, strategy,
                          lambda params, task: torch.optim.SGD(params, lr=lr),
                          batch_size=4, eval_batch_size=5, epochs_per_task=1,
                          generator=torch.Generator().manual_seed(1))


class CountingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = tiny_model()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_loss_hook_gets_the_one_forward_pass_and_its_value_is_what_is_trained():
    seen = []

    class HalfLoss(Strategy):
        def loss(self, batch, output, model):
            seen.append((batch, output.detach().clone()))
            return 0.5 * F.cross_entropy(output, batch.y)

    bench = TinyBenchmark()
    model = CountingModel()
    train(bench, model, HalfLoss(None), lr=0.2)
    # 3 batches per task, 2 tasks; each step one forward pass (the rest are evaluations)
    assert len(seen) == 6
    evaluation_calls = 3 * 2 * 3  # (initial + 2 tasks) x 2 test sets x ceil(12 / 5) batches
    assert model.calls == 6 + evaluation_calls
    batch, output = seen[0]
    assert isinstance(batch, Batch) and batch.current_task == 1 and batch.num_current == 4
    assert torch.equal(batch.inputs, batch.x.float() / 255)

    # the loss the hook returns is what the optimizer follows: half the loss at lr 0.2 is the
    # plain cross-entropy at lr 0.1, step for step
    plain = CountingModel()
    train(bench, plain, Strategy(None), lr=0.1)
    for a, b in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_train_batch_can_append_examples_and_the_loss_sees_them():
    extra_x = torch.full((2, 1, 2, 2), 255, dtype=torch.uint8)

    class Append(Strategy):
        def train_batch(self, batch):
            batch.x = torch.cat([batch.x, extra_x])
            batch.y = torch.cat([batch.y, torch.tensor([1, 1])])
            batch.logits = torch.zeros(2, 4)
            return batch

        def loss(self, batch, output, model):
            assert output.shape == (len(batch.y), 4) and batch.num_current == len(batch.y) - 2
            assert torch.equal(batch.inputs[-2:], torch.ones(2, 1, 2, 2))
            return F.mse_loss(output[-2:], batch.logits)

    model = tiny_model()
    train(TinyBenchmark(), model, Append(None))
    # trained only to put zero logits on the all-white image
    before = tiny_model()(torch.ones(1, 1, 2, 2)).abs().sum()
    after = model(torch.ones(1, 1, 2, 2)).abs().sum()
    assert after < 0.5 * before


class AlwaysThree(Strategy):
    """Classifies every test example as class 3 (scores 0, 0, 0, 1), recording the task ids
    the evaluation gives it."""

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.tasks_given = []

    def predict(self, model, inputs, task):
        self.tasks_given.append(task)
        scores = torch.zeros(len(inputs), 4)
        scores[:, 3] = 1.0
        return scores


def test_predict_hook_classifies_and_gets_no_task_id_outside_task_incremental():
    bench, strategy = TinyBenchmark(), AlwaysThree()
    result = train(bench, tiny_model(), strategy)
    # task 1's labels are 0,1,2,3 x3 (a quarter are 3s), task 2's 3,3,0,1 x3 (half)
    assert result.initial_accuracy == [0.25, 0.5]
    assert result.accuracy == [[0.25, 0.5], [0.25, 0.5]]
    # cross-entropy of scores (0,0,0,1): log(3+e) - 1 for a 3, log(3+e) for the others
    base = torch.log(torch.tensor(3 + torch.e)).item()
    assert result.initial_loss == pytest.approx([base - 0.25, base - 0.5])
    assert set(strategy.tasks_given) == {None}


def test_task_incremental_benchmark_gives_predict_the_task_and_masks_its_scores():
    bench, strategy = TinyBenchmark(task_incremental=True), AlwaysThree()
    acc, _ = Evaluator(bench, strategy, 5).tasks(tiny_model())
    assert set(strategy.tasks_given) == {1, 2}
    # task 1 scored over classes {0, 1}: the scores tie, argmax takes class 0 (labels y % 2:
    # 0,1,0,1,1,1,... -> half are 0); task 2 over {2, 3}: class 3 wins
    y1, y2 = bench.data[0][1], bench.data[1][1]
    assert acc == [float((y1 == 0).double().mean()), float((y2 == 3).double().mean())]


class SwitchesOnTaskId(Strategy):
    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.called = []

    def eval_task(self, model, task):
        self.called.append(task)


def test_eval_task_is_refused_the_task_id_on_a_domain_incremental_benchmark():
    strategy = SwitchesOnTaskId()
    evaluator = Evaluator(TinyBenchmark(), strategy, 5)
    evaluator.tasks(tiny_model())
    assert strategy.called == [] and evaluator.scenario == "domain_incremental"

    class TaskGiven(SwitchesOnTaskId):
        task_given_evaluation = True  # e.g. SupSup's per-task masks: a task-given diagnostic

    given = TaskGiven()
    evaluator = Evaluator(TinyBenchmark(), given, 5)
    evaluation = evaluator.evaluate(tiny_model())
    # the task id is given only in the task-incremental matrix beside the headline
    assert given.called == [1, 2] and evaluator.scenario == "domain_incremental"
    assert set(evaluation.matrices) == {"task_il"}
    # on a task-incremental benchmark every strategy may use the task id
    plain = SwitchesOnTaskId()
    Evaluator(TinyBenchmark(task_incremental=True), plain, 5).tasks(tiny_model())
    assert plain.called == [1, 2]


def test_continual_evaluation_never_switches_tasks_mid_training():
    given = type("TaskGiven", (SwitchesOnTaskId,), {"task_given_evaluation": True})()
    evaluator = Evaluator(TinyBenchmark(), given, 5, switch_tasks=False)
    evaluator.score(tiny_model(), 2, *TinyBenchmark().test_data(2))
    assert given.called == []


def test_strategy_attributes_with_their_own_state_are_saved_and_restored():
    class Teacher(Strategy):
        def after_training(self, ctx):
            self.teacher = tiny_model()
            with torch.no_grad():
                self.teacher[1].weight.fill_(float(ctx.task))

    strategy = Teacher(None)
    train(TinyBenchmark(), tiny_model(), strategy)
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)  # a module is accepted, without listing it
    fresh = Teacher(None)
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    assert torch.equal(fresh.teacher[1].weight, torch.full((4, 4), 2.0))
    assert fresh.teacher is not strategy.teacher

    class Holds(Strategy):
        def __init__(self):
            super().__init__(None)
            self.generator = torch.Generator()

    with pytest.raises(TypeError, match="Holds.generator"):
        Holds().state_dict()


def test_evaluation_masks_can_depend_on_the_tasks_trained_so_far():
    """A class-incremental protocol scoring over the classes seen so far: the evaluation
    asks ``eval_mask(task, trained)`` with the number of tasks trained (0 at the start)."""
    asked = []

    class SeenSoFar(TinyBenchmark):
        def eval_mask(self, task, trained):
            asked.append((task, trained))
            mask = torch.zeros(4, dtype=torch.bool)
            mask[: 2 * max(trained, 1)] = True  # task 1 brings classes 0-1, task 2 classes 2-3
            return mask

    bench = SeenSoFar()
    result = train(bench, tiny_model(), AlwaysThree())
    assert asked == [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (2, 2)]
    # after task 1 only classes {0, 1} may be predicted: the tie goes to class 0; after task 2
    # class 3 wins (task 1's labels: 0,1,2,3 x3; task 2's: 3,3,0,1 x3)
    assert result.accuracy == [[0.25, 0.25], [0.25, 0.5]]


def test_a_hook_under_the_retired_event_name_is_refused():
    """``after_task`` meant "before evaluation" for strategies and "after evaluation" for runner
    hooks; a class that still defines it would never be called, so it is refused by name."""
    from cl_runner.training.hooks import RunnerHook

    with pytest.raises(TypeError, match="rename it after_training"):
        type("OldStrategy", (Strategy,), {"after_task": lambda self, ctx: None})
    with pytest.raises(TypeError, match="rename it after_evaluation"):
        type("OldHook", (RunnerHook,), {"after_task": lambda self, task, result: None})
