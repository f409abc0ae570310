"""ImpressLearn as its first author ran MNIST (issue 13, part 3): the signed top-k masks, the
presets' network and optimizers, and what the coefficients can and cannot learn on real data
(a nearby rotation: yes; an unrelated permutation: no)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cl_runner import dispatch
from cl_runner.experiment import run_experiment
from cl_runner.models.schemas import MaskedMLPConfig, MaskRule
from cl_runner.models.supermask import build_masked_mlp
from tests.conftest import compose_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("rule", "kept"), [(MaskRule.topk_signed, [0, 0, 1, 1]),
                                            (MaskRule.topk, [1, 1, 0, 0])])
def test_signed_topk_keeps_the_largest_scores_not_the_largest_magnitudes(rule, kept):
    model = build_masked_mlp(MaskedMLPConfig(hidden_sizes=[], keep_fraction=0.5, mask_rule=rule),
                             (1, 2, 2), 1)
    layer = model.masked_layers()[0]
    with torch.no_grad():
        layer.scores[0].copy_(torch.tensor([[-5.0, -4.0, 1.0, 2.0]]))
    mask = layer.slot_mask(0)
    assert mask.flatten().tolist() == kept
    mask.sum().backward()  # straight-through (through |.| for topk)
    scores = layer.scores[0].detach()
    through = torch.ones_like(scores) if rule == MaskRule.topk_signed else scores.sign()
    assert torch.equal(layer.scores[0].grad, through)


@pytest.mark.parametrize("bench", ["permuted", "rotated"])
def test_the_paper_presets_build_the_authors_network_and_optimizers(mnist_root, bench):
    """dhrupadb/supsup (dhrupad/dev) mnist.py / mnist-basis-clean.py: 784-300-300-100 without
    bias, 25% signed top-k masks, RMSprop 1e-4 for the basis masks and 1e-3 for the
    coefficients (one B-vector per layer, 1/B at the start), inputs standardized, 2 epochs."""
    run = compose_run([f"+experiment={bench}_mnist_impresslearn_paper", "benchmark.num_tasks=2",
                       "benchmark.train_samples_per_task=100", f"data.root={mnist_root}"])
    bench_obj = dispatch.build_benchmark(run, torch.device("cpu"))
    model = dispatch.build_model(run, bench_obj, torch.device("cpu"))
    assert [tuple(layer.weight.shape) for layer in model.masked_layers()] == [
        (300, 784), (300, 300), (100, 300)]
    assert model.real_outputs == 10 and model.keep_fraction == 0.25
    assert all(layer.mask_rule == MaskRule.topk_signed for layer in model.masked_layers())
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    optimizer = dispatch.optimizer_factory(run)(list(model.parameters()), 1)
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.param_groups[0]["lr"] == 1e-4
    s = run.strategy
    assert (s.basis.value, s.combine.value, s.coefficients.value) == (
        "heterogeneous", "superposition", "layer")
    assert s.coefficient_init is None and s.coefficient_lr == 1e-3 and s.basis_size == 5
    assert run.benchmark.standardize and run.benchmark.epochs_per_task == 2
    assert run.benchmark.batch_size == 128


def last_task_accuracy(folder) -> float:
    """The last task's accuracy with the task given (the task-incremental matrix beside the
    task-inferred headline of these domain-incremental benchmarks)."""
    frame = pd.read_csv(folder / "accuracy_matrix_task_il.csv", index_col=0)
    return float(frame.iloc[-1, -1])


@pytest.mark.usefixtures("mnist_small_test_set")
def test_coefficients_learn_a_nearby_rotation_but_not_an_unrelated_permutation(tmp_path,
                                                                              mnist_root):
    """The authors' recipe, B = 2 basis masks (tasks 1-2), task 3 learns only 2 x 3
    coefficients, 15,000 training images per task. Rotated MNIST (task 3 is 9 degrees past the
    basis): the combination classifies it (measured 0.77). Permuted MNIST (task 3 an unrelated
    permutation): 6 coefficients cannot (measured 0.12), the reason ImpressLearn falls far
    below a dedicated mask there (docs/results/supermasks.md)."""
    common = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=15000",
              "strategy.basis_size=2", "progress=false",
              f"data.root={mnist_root}"]
    acc = {}
    for bench in ("rotated", "permuted"):
        summary = run_experiment(compose_run([f"+experiment={bench}_mnist_impresslearn_paper"]
                                             + common), tmp_path / bench)
        acc[bench] = last_task_accuracy(tmp_path / bench)
        coef = torch.tensor(summary["strategy_stats"]["coefficients"]["3"])
        assert coef.shape == (3, 2) and not torch.allclose(coef, torch.full_like(coef, 0.5))
        basis = pd.read_csv(tmp_path / bench / "accuracy_matrix_task_il.csv", index_col=0)
        assert basis.iloc[1, 0] > 0.8 and basis.iloc[1, 1] > 0.8  # the dedicated basis masks
    assert acc["rotated"] > 0.65
    assert acc["permuted"] < 0.3
