"""The step at the bare loop's speed (issue 32): the task's inputs converted to float once per
task into a reused buffer, the same numbers as converting every batch."""

from __future__ import annotations

import pytest
import torch

from cl_runner.strategies.base import Strategy
from cl_runner.training import steps
from cl_runner.training.hooks import StrategyHooks
from cl_runner.training.steps import task_inputs
from tests.test_interface import TinyBenchmark, tiny_model, train


def to_input(x):
    return x.float().div_(255.0)


def test_task_inputs_equal_per_batch_conversion_and_reuse_the_buffer(monkeypatch):
    monkeypatch.setattr(steps, "INPUT_CHUNK", 3)  # several chunks, a short last one
    x = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    first = task_inputs(x, to_input)
    assert first.dtype == torch.float32 and torch.equal(first, to_input(x))
    other = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    again = task_inputs(other, to_input, first)
    assert again is first and torch.equal(again, to_input(other))  # the same memory, refilled
    smaller = task_inputs(other[:7], to_input, first)
    assert smaller is not first and torch.equal(smaller, to_input(other[:7]))


def test_task_inputs_refuse_a_copy_over_the_budget(monkeypatch):
    x = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    monkeypatch.setattr(steps, "MAX_TASK_INPUT_BYTES", 10 * 16 - 1)  # 16 bytes per image
    assert task_inputs(x, to_input) is None
    monkeypatch.setattr(steps, "MAX_TASK_INPUT_BYTES", 10 * 16)
    assert task_inputs(x, to_input) is not None
    assert task_inputs(x[:0], to_input) is None


class SameLossOwnHook(Strategy):
    """The default loss through an overridden hook: the loop then converts every batch."""

    def loss(self, batch, output, model):
        return StrategyHooks.loss(self, batch, output, model)


@pytest.mark.parametrize("task_incremental", [False, True])
def test_converted_once_per_task_trains_the_same_weights_as_per_batch(task_incremental):
    results = []
    for strategy in (Strategy(None), SameLossOwnHook(None)):
        model = tiny_model()
        result = train(TinyBenchmark(task_incremental), model, strategy)
        results.append((result.accuracy, result.loss, [p.detach().clone() for p in model.parameters()]))
    (acc, loss, weights), (acc2, loss2, weights2) = results
    assert acc == acc2 and loss == loss2
    assert all(torch.equal(a, b) for a, b in zip(weights, weights2, strict=True))


def test_the_plain_step_reads_the_converted_inputs(monkeypatch):
    """The default strategy's step gathers from task_inputs' tensor (breaking that copy
    changes training), the per-batch path does not read it."""
    real = steps.task_inputs
    monkeypatch.setattr("cl_runner.training.loop.task_inputs",
                        lambda x, f, out=None: real(x, f, out).mul_(0.0))
    zeroed = tiny_model()
    train(TinyBenchmark(), zeroed, Strategy(None))
    per_batch = tiny_model()
    train(TinyBenchmark(), per_batch, SameLossOwnHook(None))
    assert not torch.equal(zeroed[1].weight, per_batch[1].weight)
    # trained on all-zero inputs, only the bias moves
    assert torch.equal(zeroed[1].weight, tiny_model()[1].weight)
