"""Supermask models and the SupSup / ImpressLearn strategies on small real-MNIST sequences:
fixed weights never change, top-k keeps exactly k of each layer, no forgetting with the task
given, one-shot inference finds the task, an ImpressLearn task stores only its coefficients."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from cl_runner import dispatch
from cl_runner.errors import ConfigError
from cl_runner.experiment import parameter_cost_summary, run_experiment
from cl_runner.models.mlp import MLP
from cl_runner.models.supermask import (
    MaskedMLPConfig,
    MaskedResNet18ReducedConfig,
    build_masked_mlp,
    build_masked_resnet18_reduced,
    kept_count,
    topk_mask,
)
from cl_runner.strategies.naive import Naive, NaiveConfig
from cl_runner.summarize import summarize
from cl_runner.training.loop import train_sequence
from tests.conftest import compose_run

CPU = torch.device("cpu")
SHORT = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=1000", "progress=false",
         "hardware=cpu", "benchmark.eval_batch_size=2000", "model.hidden_sizes=[64,64]"]


pytestmark = pytest.mark.usefixtures("one_thread")


def build_and_train(mnist_root, overrides):
    """Compose, build and train as ``run_experiment`` does, keeping the objects."""
    run = compose_run(SHORT + [f"data.root={mnist_root}"] + overrides)
    torch.manual_seed(run.seed)
    generator = torch.Generator().manual_seed(run.seed)
    strategy = dispatch.build_strategy(run)
    bench = dispatch.build_benchmark(run, CPU)
    model = dispatch.build_model(run, bench, CPU)
    fixed = model.fixed_state()
    result = train_sequence(bench, model, strategy, dispatch.optimizer_factory(run),
                            batch_size=run.benchmark.batch_size,
                            eval_batch_size=run.benchmark.eval_batch_size,
                            epochs_per_task=1, generator=generator)
    return result, model, strategy, fixed


# ------------------------------------------------------------------- model

@pytest.mark.parametrize("keep", [0.5, 0.3, 0.05])
def test_topk_keeps_exactly_k_of_each_layer(keep):
    torch.manual_seed(0)
    model = build_masked_mlp(MaskedMLPConfig(keep_fraction=keep), (1, 28, 28), 10)
    slot = model.add_slot(torch.Generator().manual_seed(3))
    for masks in (model.current_masks(), model.slot_masks(slot)):
        for layer, m in zip(model.masked_layers(), masks, strict=True):
            n = layer.weight.numel()
            assert int(m.sum()) == kept_count(n, keep) == round(keep * n)
            assert set(m.float().unique().tolist()) <= {0.0, 1.0}


def test_topk_mask_is_straight_through():
    scores = torch.tensor([0.3, -2.0, 1.0, 0.1], requires_grad=True)
    mask = topk_mask(scores, 0.5)
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    (mask * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert scores.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_masked_mlp_has_fixed_weights_and_only_scores_as_parameters():
    torch.manual_seed(0)
    model = build_masked_mlp(MaskedMLPConfig(), (1, 28, 28), 10)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["body.net.1.scores.0", "body.net.3.scores.0", "body.net.5.scores.0"]
    weights = [layer.weight for layer in model.masked_layers()]
    assert not any(w.requires_grad for w in weights)
    # signed Kaiming constant: +-sqrt(2 / fan_in), both signs
    for w in weights:
        assert torch.allclose(w.abs(), torch.full_like(w, math.sqrt(2.0 / w.shape[1])))
        assert (w > 0).any() and (w < 0).any()
    assert model.num_weights() == 784 * 256 + 256 * 256 + 256 * 10
    out = model(torch.rand(5, 1, 28, 28))
    assert out.shape == (5, 10)


def test_batched_slots_equal_separate_forwards():
    torch.manual_seed(0)
    model = build_masked_mlp(MaskedMLPConfig(hidden_sizes=[32]), (1, 28, 28), 10)
    model.add_slot(torch.Generator().manual_seed(1))
    x = torch.rand(6, 1, 28, 28)
    model.use_slots_batched([0, 1])
    both = model(torch.cat([x, x]))
    model.use_slot(0)
    first = model(x)
    model.use_slot(1)
    second = model(x)
    assert torch.allclose(both, torch.cat([first, second]))
    assert not torch.allclose(first, second)


def test_masked_resnet_masks_every_conv_and_has_no_affine_batchnorm():
    torch.manual_seed(0)
    cfg = MaskedResNet18ReducedConfig(nf=4)
    model = build_masked_resnet18_reduced(cfg, (3, 32, 32), 100)
    assert not any(isinstance(m, torch.nn.Conv2d | torch.nn.Linear) for m in model.modules())
    assert len(model.masked_layers()) == 1 + 8 * 2 + 3 + 1  # stem, 16 convs, 3 shortcuts, head
    assert all(n.endswith(".scores.0") for n, _ in model.named_parameters())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ConfigError, match=r"\(1, 28, 28\)"):
        build_masked_resnet18_reduced(cfg, (1, 28, 28), 10)


def test_config_errors():
    with pytest.raises(ConfigError, match="strategy=supsup needs a supermask model.*masked_mlp"):
        compose_run(["strategy=supsup", "model=mlp"])
    with pytest.raises(ConfigError, match="keep_fraction"):
        build_masked_mlp(MaskedMLPConfig(keep_fraction=0.0), (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="basis_size"):
        dispatch.build_strategy(compose_run(["strategy=impresslearn", "strategy.basis_size=0"]))
    run = compose_run(["strategy=supsup"])
    assert (run.model.name, run.optimizer.name, run.benchmark.batch_size) == ("masked_mlp", "adam", 128)


def test_ordinary_strategies_count_the_whole_model_as_shared():
    model = MLP(784, [256, 256], 10)
    cost = parameter_cost_summary(Naive(NaiveConfig()).parameter_cost(model, 20))
    assert cost["parameter_cost"]["shared_floats"] == sum(p.numel() for p in model.parameters())
    assert cost["task_cost_floats"] == 0.0
    assert cost["total_cost_floats"] == cost["parameter_cost"]["shared_floats"]


# ------------------------------------------------------------------- strategies

@pytest.mark.parametrize("overrides", [
    ["strategy=supsup"],
    ["strategy=impresslearn", "strategy.basis_size=2"],
    ["strategy=impresslearn", "strategy.basis_size=2", "strategy.basis=homogeneous",
     "strategy.combine=topk", "strategy.coefficients=network"],
    ["strategy=impresslearn", "strategy.basis_size=2", "strategy.basis=random"],
], ids=["supsup", "impresslearn", "impresslearn-homogeneous-topk", "impresslearn-random"])
@pytest.mark.usefixtures("mnist_small_test_set")
def test_fixed_weights_unchanged_and_no_forgetting_with_the_task_given(mnist_root, overrides):
    result, model, strategy, fixed = build_and_train(
        mnist_root, overrides + ["benchmark=permuted_mnist"])
    after = model.fixed_state()
    assert fixed.keys() == after.keys() and len(fixed) == 3
    assert all(torch.equal(fixed[k], after[k]) for k in fixed)  # bit-identical
    acc = result.matrices["task_il"]  # the task given (the headline infers it on this benchmark)
    for j in range(3):  # each task's accuracy never changes once learned: forgetting exactly 0
        assert [acc[i][j] for i in range(j, 3)] == [acc[j][j]] * (3 - j)
    if overrides == ["strategy=supsup"]:  # masks learned in 8 steps are above chance (10%)
        assert min(acc[i][i] for i in range(3)) > 0.3


def test_supsup_one_shot_inference_recovers_the_task(tmp_path, mnist_root):
    """3 permuted tasks: with batches of 128 test images, one-shot inference names the right
    task for every batch, so the task-inferred accuracy (the headline on this
    domain-incremental benchmark) equals the task-given accuracy (the task-incremental matrix
    beside it)."""
    run = compose_run(SHORT + [f"data.root={mnist_root}", "strategy=supsup",
                               "benchmark=permuted_mnist", "benchmark.train_samples_per_task=2000"])
    run_experiment(run, tmp_path)
    inference = pd.read_csv(tmp_path / "accuracy_matrix_task_inference.csv", index_col=0)
    inferred = pd.read_csv(tmp_path / "accuracy_matrix.csv", index_col=0)
    given = pd.read_csv(tmp_path / "accuracy_matrix_task_il.csv", index_col=0)
    assert not (tmp_path / "accuracy_matrix_task_inferred.csv").exists()
    assert inference.shape == inferred.shape == given.shape == (3, 3)
    assert inference.iloc[-1].tolist() == [1.0, 1.0, 1.0]
    assert inferred.iloc[-1].to_numpy() == pytest.approx(given.iloc[-1].to_numpy())
    assert math.isnan(inference.iloc[0, 1])  # no inference accuracy before the task is learned
    assert not math.isnan(inferred.iloc[0, 1])  # the headline scores every task, as for all
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["scenario"] == "domain_incremental"
    assert on_disk["task_il"]["forgetting"] == 0.0 and on_disk["forgetting"] == 0.0
    assert on_disk["task_inference_average_accuracy"] == 1.0
    assert on_disk["task_il_average_accuracy"] == pytest.approx(on_disk["average_accuracy"])
    assert "task_inferred_average_accuracy" not in on_disk
    mask_floats = (784 * 64 + 64 * 64 + 64 * 10) / 32
    assert on_disk["parameter_cost"]["task_floats"] == [mask_floats] * 3
    assert on_disk["task_cost_floats"] == mask_floats
    # cl-summarize shows the supermask columns
    table = summarize([tmp_path], metrics=["average_accuracy", "task_il_average_accuracy",
                                           "task_inference_average_accuracy", "task_cost_floats"],
                      out=tmp_path / "summary", plots=False).table.set_index("metric")["mean"]
    assert table["task_inference_average_accuracy"] == 1.0
    assert table["task_cost_floats"] == mask_floats


@pytest.mark.parametrize(("scope", "per_task"), [("layer", 2 * 3), ("network", 2)])
@pytest.mark.usefixtures("mnist_small_test_set")
def test_impresslearn_task_stores_only_its_coefficients(mnist_root, scope, per_task):
    result, model, strategy, _ = build_and_train(
        mnist_root, ["strategy=impresslearn", "strategy.basis_size=2",
                     f"strategy.coefficients={scope}"])
    # tasks 1 and 2 made the basis; task 3 trained only B coefficients (per layer)
    assert len(model.coefficients) == 1
    assert model.coefficients[0].numel() == per_task
    assert list(strategy.coefficients) == [3]
    coef = torch.tensor(strategy.coefficients[3])
    assert not torch.allclose(coef, torch.full_like(coef, 0.5))  # they were trained
    mask_floats = model.num_weights() / 32
    cost = strategy.parameter_cost(model, 3)
    assert cost["task_floats"] == [mask_floats, mask_floats, per_task]
    # the scores of the basis tasks are untouched by task 3 (its optimizer saw only coef)
    masks_before = [m.clone() for m in strategy.task_masks[1]]
    assert all(torch.equal(a, b) for a, b in zip(masks_before, model.slot_masks(0), strict=True))


def test_entropy_gradient_points_to_the_matching_mask():
    """One-shot inference on a toy problem: the batch comes from the task whose mask gives
    confident outputs; the entropy gradient names it."""
    from cl_runner.strategies.supermask import one_shot_inference

    torch.manual_seed(0)
    model = build_masked_mlp(MaskedMLPConfig(hidden_sizes=[32]), (1, 4, 4), 3)
    x = torch.rand(64, 1, 4, 4)
    y = torch.randint(0, 3, (64,))
    slots = [0, model.add_slot(torch.Generator().manual_seed(1)),
             model.add_slot(torch.Generator().manual_seed(2))]
    # train slot 1 to fit (x, y) confidently; slots 0 and 2 stay random
    model.use_slot(1)
    opt = torch.optim.Adam(model.slot_parameters(1), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    masks = [model.slot_masks(s) for s in slots]
    stacks = [torch.stack([m[layer].float() for m in masks]) for layer in range(2)]
    assert int(one_shot_inference(model, x, stacks)) == 1
