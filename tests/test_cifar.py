"""Split CIFAR-100 on a generated archive in CIFAR-100's own python format, read through
torchvision: loading, class split, task masks and short runs (the reduced ResNet-18 itself: test_resnet.py)."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cl_runner import dispatch
from cl_runner.data.cifar import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    Scenario,
    SplitCIFAR100,
    SplitCIFAR100Config,
)
from cl_runner.data.masking import mask_logits, masks_by_label, rows
from cl_runner.data.sources import CIFAR100_FILES, _cifar100_reader, load_cifar100
from cl_runner.errors import ConfigError, DatasetNotFoundError
from cl_runner.experiment import run_experiment
from cl_runner.models.resnet import ResNet18Reduced
from cl_runner.training.evaluate import evaluate_tasks
from cl_runner.training.loop import train_sequence
from tests.conftest import (
    CIFAR_TEST_PER_CLASS,
    CIFAR_TRAIN_PER_CLASS,
    compose_run,
    train_resnet_head_snapshots,
)

CPU = torch.device("cpu")
#: the session archive of tests/conftest.py (fixture ``cifar_root``)
TRAIN_PER_CLASS, TEST_PER_CLASS = CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS


def make(cifar_root, **kwargs) -> SplitCIFAR100:
    cfg = SplitCIFAR100Config(verify_checksums=False, **kwargs)
    return SplitCIFAR100(cfg, str(cifar_root), False, seed=1, device=CPU)


# ---------------------------------------------------------------- archive and loading

def test_archive_round_trip_through_torchvision(cifar_root):
    folder = cifar_root / "cifar-100-python"
    assert sorted(p.name for p in folder.iterdir()) == sorted(CIFAR100_FILES)
    with open(folder / "train", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert raw["data"].dtype == np.uint8 and raw["data"].shape == (100 * TRAIN_PER_CLASS, 3072)

    from torchvision.datasets import CIFAR100
    assert issubclass(_cifar100_reader(False), CIFAR100)  # torchvision's own reader
    train_x, train_y, test_x, test_y, names = load_cifar100(cifar_root, download=False,
                                                            verify_checksums=False)
    assert train_x.shape == (400, 3, 32, 32) and train_x.dtype == torch.uint8
    assert test_x.shape == (200, 3, 32, 32) and test_y.dtype == torch.int64
    # the pickle's rows are the R, G, B planes of each image, row-major
    assert torch.equal(train_x, torch.from_numpy(raw["data"]).view(-1, 3, 32, 32))
    assert train_y.tolist() == raw["fine_labels"]
    assert torch.equal(torch.bincount(train_y, minlength=100), torch.full((100,), TRAIN_PER_CLASS))
    assert names[:2] == ["class_00", "class_01"] and len(names) == 100
    # torchvision's PIL view of an image equals our tensor (channel order, orientation)
    pil, label = _cifar100_reader(False)(str(cifar_root), train=False)[3]
    assert label == test_y[3] and torch.equal(torch.from_numpy(np.array(pil)).permute(2, 0, 1),
                                              test_x[3])


def test_generated_archive_fails_official_checksums_with_a_message(cifar_root):
    with pytest.raises(DatasetNotFoundError, match="benchmark.verify_checksums=false"):
        load_cifar100(cifar_root, download=False, verify_checksums=True)


def test_missing_cifar_error_names_folder_files_and_env_var(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar100(tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "cifar-100-python") in msg
    assert all(name in msg for name in CIFAR100_FILES) and "CL_RUNNER_DATA" in msg
    assert not (tmp_path / "cifar-100-python").exists()


# ---------------------------------------------------------------- class split and tasks

def test_twenty_tasks_of_five_consecutive_classes(cifar_root):
    bench = make(cifar_root)
    assert bench.num_tasks == 20 and bench.num_classes == 100 and bench.input_shape == (3, 32, 32)
    assert torch.equal(bench.task_classes, torch.arange(100).view(20, 5))
    seen = []
    for t in range(1, 21):
        x, y = bench.train_data(t)
        tx, ty = bench.test_data(t)
        assert x.shape == (5 * TRAIN_PER_CLASS, 3, 32, 32) and x.dtype == torch.uint8
        assert tx.shape == (5 * TEST_PER_CLASS, 3, 32, 32)
        assert set(y.tolist()) == set(ty.tolist()) == set(range(5 * (t - 1), 5 * t))
        seen += y.tolist()
    assert sorted(seen) == sorted(np.repeat(np.arange(100), TRAIN_PER_CLASS).tolist())
    masks = bench.task_masks
    assert masks.shape == (20, 100) and masks.dtype == torch.bool
    assert masks.sum(1).tolist() == [5] * 20 and masks.sum(0).tolist() == [1] * 100
    frame = bench.artifacts()["classes.csv"]
    assert list(frame.columns) == ["task", "class_id", "class_name"] and len(frame) == 100
    assert frame.iloc[7].tolist() == [2, 7, "class_07"]
    with pytest.raises(IndexError):
        bench.train_data(21)


def test_seeded_and_explicit_class_orders(cifar_root):
    a = make(cifar_root, num_tasks=4, class_order_seed=3)
    b = make(cifar_root, num_tasks=4, class_order_seed=3)
    c = make(cifar_root, num_tasks=4, class_order_seed=4)
    assert torch.equal(a.task_classes, b.task_classes)
    assert not torch.equal(a.task_classes, c.task_classes)
    assert not torch.equal(a.task_classes, torch.arange(20).view(4, 5))
    assert len(set(a.task_classes.flatten().tolist())) == 20
    for t in range(1, 5):
        assert set(a.train_data(t)[1].tolist()) == set(a.task_classes[t - 1].tolist())
    order = [99, 3, 42, 7, 0, 1]
    d = make(cifar_root, num_tasks=2, classes_per_task=3, class_order=order)
    assert d.task_classes.tolist() == [[99, 3, 42], [7, 0, 1]]
    assert set(d.test_data(1)[1].tolist()) == {99, 3, 42}


def test_train_subset_is_seeded_per_task(cifar_root):
    bench = make(cifar_root, num_tasks=2, train_samples_per_task=7)
    x, y = bench.train_data(1)
    assert x.shape[0] == 7 and set(y.tolist()) <= set(range(5))
    assert torch.equal(make(cifar_root, num_tasks=2, train_samples_per_task=7).train_data(1)[1], y)


@pytest.mark.parametrize(("kwargs", "key"), [
    (dict(num_tasks=21), "classes_per_task"),
    (dict(num_tasks=2, class_order=[0, 1, 2, 3, 3, 4, 5, 6, 7, 8]), "class_order"),
    (dict(num_tasks=2, class_order=[0, 1, 2]), "class_order"),
    (dict(classes_per_task=0), "classes_per_task"),
    (dict(num_tasks=2, train_samples_per_task=10_000), "train_samples_per_task"),
])
def test_bad_benchmark_values_rejected(cifar_root, kwargs, key):
    with pytest.raises(ConfigError, match=key):
        make(cifar_root, **kwargs)


def test_to_input_scales_or_standardizes_per_batch(cifar_root):
    x = make(cifar_root, num_tasks=1).train_data(1)[0][:4]
    plain = make(cifar_root, num_tasks=1).to_input(x)
    assert plain.dtype == torch.float32 and plain.shape == x.shape
    assert torch.allclose(plain, x.float() / 255)
    std = make(cifar_root, num_tasks=1, standardize=True).to_input(x)
    mean, sd = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    assert torch.allclose(std, (x.float() / 255 - mean) / sd, atol=1e-5)


# ---------------------------------------------------------------- masking

def test_mask_logits_makes_other_classes_impossible():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 100, generator=gen) * 10
    allowed = torch.zeros(100, dtype=torch.bool)
    allowed[10:15] = True
    masked = mask_logits(logits, allowed)
    assert set(masked.argmax(1).tolist()) <= set(range(10, 15))
    assert torch.equal(masked[:, 10:15], logits[:, 10:15]) and torch.isinf(masked[:, :10]).all()
    # softmax over the allowed classes only; finite loss for allowed labels
    y = torch.full((64,), 12)
    assert torch.allclose(F.cross_entropy(masked, y),
                          F.cross_entropy(logits[:, 10:15], y - 10))
    # per-example masks (B, C)
    per_example = torch.zeros(64, 100, dtype=torch.bool)
    per_example[torch.arange(64), torch.arange(64) % 100] = True
    assert torch.equal(mask_logits(logits, per_example).argmax(1), torch.arange(64))


def test_masks_by_label_and_rows():
    masks = torch.zeros(3, 9, dtype=torch.bool)
    for t in range(3):
        masks[t, 3 * t : 3 * t + 3] = True
    by_label = masks_by_label(masks)
    assert by_label.shape == (9, 9)
    for c in range(9):
        assert torch.equal(by_label[c], masks[c // 3])
    assert rows(None, torch.tensor([0])) is None
    first = masks[0]
    assert rows(first, torch.tensor([2, 1])) is first
    assert torch.equal(rows(by_label, torch.tensor([4, 8])), masks[[1, 2]])


class ConstantLogits(nn.Module):
    """Logits = 0, 1, ..., 99 for every input: class 99 always wins without a mask."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.arange(100, dtype=torch.float32))

    def forward(self, x):
        return self.bias.expand(len(x), -1)


def test_task_incremental_evaluation_predicts_only_the_tasks_classes(cifar_root):
    model = ConstantLogits()
    ti = make(cifar_root, num_tasks=3)
    ci = make(cifar_root, num_tasks=3, scenario=Scenario.class_incremental)
    assert ti.class_masks("test") is not None and ci.class_masks("test") is None
    # class-incremental trains on every output unless asked (van de Ven's "all" active classes)
    assert ci.class_masks("train") is None
    assert make(cifar_root, num_tasks=3, scenario=Scenario.class_incremental,
                train_mask=True).class_masks("train") is not None
    acc_ti, loss_ti = evaluate_tasks(model, ti, batch_size=4)
    acc_ci, _ = evaluate_tasks(model, ci, batch_size=4)
    # task-incremental: the prediction is the task's highest logit, class 5t-1: 1 of 5 classes
    assert acc_ti == pytest.approx([0.2, 0.2, 0.2])
    assert all(math.isfinite(v) for v in loss_ti)
    # class-incremental: class 99 (in no task of 3) always wins: never correct
    assert acc_ci == [0.0, 0.0, 0.0]


def test_training_step_never_touches_other_tasks_outputs(cifar_root):
    """With the training mask, the gradient of other tasks' logits is zero, so one task of
    training leaves their rows of the last layer unchanged; without it, it moves them."""
    def train_one_task(train_mask: bool):
        torch.manual_seed(0)
        bench = make(cifar_root, num_tasks=1, train_mask=train_mask,
                     scenario=Scenario.class_incremental)
        model = ResNet18Reduced(3, 100, nf=4)
        before = model.linear.weight.detach().clone()
        from cl_runner.strategies.naive import Naive, NaiveConfig
        train_sequence(bench, model, Naive(NaiveConfig()),
                       lambda params, task: torch.optim.SGD(params, lr=0.1, momentum=0.8),
                       batch_size=5, eval_batch_size=100, epochs_per_task=1,
                       generator=torch.Generator().manual_seed(0))
        return before, model.linear.weight.detach()

    before, after = train_one_task(True)
    assert torch.equal(after[5:], before[5:])
    assert not torch.equal(after[:5], before[:5])
    before, after = train_one_task(False)
    assert not torch.equal(after[5:], before[5:])


def test_replayed_examples_are_masked_to_their_own_task(cifar_root):
    """A strategy whose ``train_batch`` mixes task-1 examples into task 2's batches (and
    declares ``mixes_tasks``): each example must be masked to its own task (by label). With
    task 2's mask for all, the replayed labels would be impossible and the loss +inf."""
    from cl_runner.strategies.base import Strategy

    class ReplayTask1(Strategy):
        mixes_tasks = True

        def after_training(self, ctx):
            if ctx.task == 1:
                self.x, self.y = ctx.train_x[:5], ctx.train_y[:5]

        def train_batch(self, batch):
            if hasattr(self, "x"):
                batch.x, batch.y = torch.cat([batch.x, self.x]), torch.cat([batch.y, self.y])
            return batch

    bench = make(cifar_root, num_tasks=2)
    initial, snapshots, result = train_resnet_head_snapshots(bench, ReplayTask1(None))
    after_1, after_2 = snapshots
    assert all(math.isfinite(v) for row in result.loss for v in row)
    assert torch.isfinite(after_2).all()
    assert not torch.equal(after_2[:5], after_1[:5])  # replay trained task 1's outputs
    assert torch.equal(after_2[10:], initial[10:])  # classes of no task: never touched


# ---------------------------------------------------------------- config and runs

def test_benchmark_selects_resnet_and_refuses_mlp_before_loading(tmp_path):
    run = compose_run(["benchmark=split_cifar100"])
    assert run.model.name == "resnet18_reduced" and run.benchmark.scenario is Scenario.task_incremental
    assert compose_run(["benchmark=split_cifar100", "strategy=mcsgd"]).model.name == "resnet18_reduced"
    with pytest.raises(ConfigError, match="model=mlp does not fit benchmark=split_cifar100.*"
                                          "model=resnet18_reduced"):
        compose_run(["benchmark=split_cifar100", "model=mlp",
                     f"data.root={tmp_path / 'missing'}"])
    assert not (tmp_path / "missing").exists()


SHORT = ["benchmark=split_cifar100", "benchmark.num_tasks=3", "benchmark.verify_checksums=false",
         "progress=false", "hardware=cpu", "hardware.num_threads=1", "data.download=false"]


def test_three_task_mcsgd_run_on_the_generated_archive(tmp_path, cifar_root):
    """MC-SGD on 3 tasks of the generated archive (every strategy runs 2 tasks of it in
    tests/test_strategies.py): the CIFAR settings reach the run, the class table is written,
    the memory holds 1 example per class and the line phase lowers its objective."""
    run = compose_run(SHORT + ["strategy=mcsgd", f"data.root={cifar_root}", "model.nf=4",
                               "strategy.subset_size=10", "strategy.lmc_batch_size=10",
                               "strategy.line_samples=2"])
    summary = run_experiment(run, tmp_path)
    assert summary["status"] == "complete" and summary["model"] == "resnet18_reduced"
    matrix = pd.read_csv(tmp_path / "accuracy_matrix.csv", index_col=0)
    assert matrix.shape == (3, 3) and ((matrix >= 0) & (matrix <= 1)).all().all()
    tidy = pd.read_csv(tmp_path / "metrics.csv")
    assert len(tidy) == 9 and np.isfinite(tidy["loss"]).all()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["config"]["benchmark"]["scenario"] == "task_incremental"
    assert on_disk["config"]["model"]["track_running_stats"] is False
    assert pd.read_csv(tmp_path / "classes.csv")["class_id"].tolist() == list(range(15))
    stats = summary["strategy_stats"]
    assert stats["episodic_memory_size"] == 15  # 1 per class, 5 per task
    assert [h["task"] for h in stats["line_phase"]] == [2, 3]
    for h in stats["line_phase"]:
        assert math.isfinite(h["line_loss_before"]) and h["line_loss_after"] < h["line_loss_before"]


def test_mcsgd_line_phase_keeps_unused_classes_untouched(cifar_root):
    """Every training path masks: after the continual and line phases of 3 tasks (classes
    0..14), the last-layer rows of the classes 15..99 are still their initial values."""
    run = compose_run(SHORT + ["strategy=mcsgd", f"data.root={cifar_root}", "model.nf=4",
                               "strategy.subset_size=10", "strategy.lmc_batch_size=10",
                               "strategy.line_samples=2", "benchmark.batch_size=10"])
    torch.manual_seed(run.seed)
    bench = dispatch.build_benchmark(run, CPU)
    model = dispatch.build_model(run, bench, CPU)
    strategy = dispatch.build_strategy(run)
    before = model.linear.weight.detach().clone()
    train_sequence(bench, model, strategy, dispatch.optimizer_factory(run), batch_size=10,
                   eval_batch_size=1000, epochs_per_task=1, generator=torch.Generator().manual_seed(1))
    assert [h["task"] for h in strategy.line_history] == [2, 3]
    after = model.linear.weight.detach()
    assert torch.equal(after[15:], before[15:])
    assert not torch.equal(after[:15], before[:15])


@pytest.mark.slow
def test_cl_run_split_cifar100_mcsgd_end_to_end(tmp_path, cifar_root):
    """The acceptance command, through the console entry point, on the generated archive."""
    out = tmp_path / "run"
    env = dict(os.environ, CL_RUNNER_DATA=str(cifar_root))
    proc = subprocess.run(
        [sys.executable, "-m", "cl_runner", "benchmark=split_cifar100", "strategy=mcsgd",
         "benchmark.num_tasks=2", "benchmark.verify_checksums=false", "data.download=false",
         "hardware.num_threads=1", "strategy.subset_size=10", "strategy.line_samples=2",
         "progress=false",
         f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["model"] in ("resnet18_reduced", "masked_resnet18_reduced")
    assert summary["benchmark"] == "split_cifar100"
    assert (out / "classes.csv").exists()


#: the Split CIFAR-100 class-incremental (10 x 10) presets of issue 29 (their sources' settings:
#: tests/test_experiments.py); each runs here on 2 tasks of the generated archive
CLASS_IL_PRESETS = ["split_cifar100_derpp", "split_cifar100_er", "split_cifar100_er_ace",
                    "split_cifar100_gdumb", "split_cifar100_icarl", "split_cifar100_lwf"]


@pytest.mark.parametrize("name", CLASS_IL_PRESETS)
def test_class_il_preset_runs_two_tasks_of_its_class_order(tmp_path, cifar_root, name):
    """Two tasks of a 10 x 10 class-incremental preset on the generated archive, its settings
    as written except a small network, 2 steps per task and GDumb's retraining cut to 1
    epoch: the tasks hold the first 20 classes of the preset's class order, the run is
    class-incremental with one 100-way head, and after task 1 the classes of task 2 are
    never predicted on the seen-classes presets (accuracy 0 on task 2's test set)."""
    extra = ["strategy.epochs=1"] if name.endswith("gdumb") else []
    run = compose_run([f"+experiment={name}", f"data.root={cifar_root}", "data.download=false",
                       "benchmark.verify_checksums=false", "benchmark.num_tasks=2",
                       "benchmark.max_steps_per_task=2", "model.nf=4", "progress=false",
                       "hardware=cpu", "hardware.num_threads=1", *extra])
    summary = run_experiment(run, tmp_path)
    assert summary["status"] == "complete" and summary["num_tasks"] == 2
    order = run.benchmark.order()
    classes = pd.read_csv(tmp_path / "classes.csv")
    assert classes["class_id"].tolist() == order[:20]
    assert classes["task"].tolist() == [1] * 10 + [2] * 10
    config = json.loads((tmp_path / "summary.json").read_text())["config"]["benchmark"]
    assert config["scenario"] == "class_incremental"
    matrix = pd.read_csv(tmp_path / "accuracy_matrix.csv", index_col=0).to_numpy()
    assert matrix.shape == (2, 2) and ((matrix >= 0) & (matrix <= 1)).all()
    if config["eval_classes"] == "seen":
        assert matrix[0, 1] == 0.0
