"""Every registered strategy runs 2 tasks of every registered benchmark through the one loop
and writes well-formed files (docs/design.md, principle 7: tests come from the registry); MC-SGD's
line phase; failed and diverged runs are recorded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cl_runner.data import BENCHMARKS
from cl_runner.data.schemas import SplitConfig
from cl_runner.dispatch import resolve
from cl_runner.errors import ConfigError, DatasetNotFoundError, TrainingDivergedError
from cl_runner.experiment import run_experiment
from cl_runner.results import metrics
from cl_runner.strategies import STRATEGIES
from tests.conftest import compose_run, refused_scenario, tiny_run_cfg

SHORT = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=1000", "progress=false",
         "hardware=cpu", "hardware.num_threads=1"]


def run_short(tmp_path, mnist_root, overrides):
    run = compose_run(SHORT + [f"data.root={mnist_root}"] + overrides)
    return run_experiment(run, tmp_path), tmp_path


# ---------------------------------------------------------------- every strategy x benchmark

#: slow in make test (every strategy still runs there on rotated_mnist, below):
#: - permuted_mnist, the same MNIST task code and strategy code as rotated_mnist; its
#:   permutations are checked by tests/test_data.py, tests/test_cli.py (permutations.csv) and
#:   the supermask and device-tracking runs on it;
#: - split_cifar100: tests/test_resume.py's test_every_strategy_resumes_byte_identical runs
#:   every strategy on the same 2 tasks (tiny_run_cfg; supermask ones with task inference)
#:   to a complete result, and the files are written by the same code as rotated_mnist's
SLOW_BENCHMARKS = ("permuted_mnist", "split_cifar100")


@pytest.mark.parametrize("benchmark", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_BENCHMARKS else name
    for name in BENCHMARKS.names()])
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_runs_two_tasks_of_every_benchmark(tmp_path, request, strategy,
                                                          benchmark):
    """docs/design.md principle 7: every registered strategy on every registered benchmark (its
    small test data from tests/conftest.py), 2 tasks on the benchmark's default model or the
    one that fits the strategy, writes a sane accuracy matrix, tidy metrics and summary; a
    strategy that refuses the benchmark's scenario (``unsupported_scenarios``: WA and BiC need
    classes that arrive over tasks) is refused by name before any file is written."""
    cfg = tiny_run_cfg(request, strategy, benchmark)
    reason = refused_scenario(strategy, cfg)
    if reason is not None:  # a class-incremental method (WA, BiC) on Rotated/Permuted MNIST
        with pytest.raises(ConfigError) as info:
            resolve(cfg)
        msg = str(info.value)
        assert f"strategy={strategy} does not run on benchmark={benchmark}" in msg
        assert "benchmark.scenario=domain_incremental" in msg and reason in msg
        assert not any(tmp_path.iterdir())
        return
    summary = run_experiment(resolve(cfg), tmp_path)
    out = tmp_path

    matrix = pd.read_csv(out / "accuracy_matrix.csv", index_col=0)
    assert list(matrix.columns) == ["task_1", "task_2"]
    assert list(matrix.index) == ["after_task_1", "after_task_2"]
    assert ((matrix >= 0) & (matrix <= 1)).all().all()

    tidy = pd.read_csv(out / "metrics.csv")
    assert list(tidy.columns) == ["train_task", "eval_task", "accuracy", "loss", "trained"]
    assert len(tidy) == 4
    assert tidy.pivot(index="train_task", columns="eval_task", values="accuracy").to_numpy() == (
        pytest.approx(matrix.to_numpy()))
    assert np.isfinite(tidy["loss"]).all() and tidy["loss"].gt(0).all()

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["status"] == "complete" and on_disk["num_tasks"] == 2
    assert on_disk["strategy"] == strategy and on_disk["benchmark"] == benchmark
    assert on_disk["average_accuracy"] == pytest.approx(matrix.iloc[-1].mean())
    assert on_disk["average_accuracy"] == pytest.approx(summary["average_accuracy"])
    assert on_disk["forgetting"] == pytest.approx(metrics.forgetting(matrix.to_numpy()))
    assert on_disk["learning_accuracy"] == pytest.approx(np.diag(matrix.to_numpy()).mean())
    for key in ("forgetting", "backward_transfer", "learning_accuracy", "wall_time_seconds",
                "task_seconds", "versions", "git_commit", "seed", "average_accuracy_per_task"):
        assert key in on_disk
    assert len(on_disk["task_seconds"]) == 2 and on_disk["versions"]["torch"]
    # the initial evaluation, then one per task, each inside its task's time
    assert len(on_disk["eval_seconds"]) == 3 and min(on_disk["eval_seconds"]) > 0
    assert all(e < t for e, t in zip(on_disk["eval_seconds"][1:], on_disk["task_seconds"], strict=True))
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


#: the class-split benchmarks (benchmark.scenario=task|domain|class)
SPLIT_BENCHMARKS = [name for name in BENCHMARKS.names()
                    if issubclass(BENCHMARKS.get(name).config, SplitConfig)]


@pytest.mark.parametrize("benchmark", SPLIT_BENCHMARKS)
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_runs_class_incremental_or_is_refused_by_name(request, strategy, benchmark):
    """Item 4 of the class-incremental issue: on every split benchmark with
    ``benchmark.scenario=class`` a strategy either resolves (and
    test_every_strategy_runs_two_tasks_of_every_benchmark runs it on split_mnist, class-IL by
    default) or is refused before anything is read or written, the message naming the
    strategy, the scenario and why (its config's ``unsupported_scenarios``)."""
    cfg = tiny_run_cfg(request, strategy, benchmark, ["benchmark.scenario=class"])
    reason = getattr(STRATEGIES.get(strategy).config, "unsupported_scenarios", {}).get(
        "class_incremental")
    if reason is None:
        run = resolve(cfg)
        assert run.benchmark.scenario.value == "class_incremental"
        return
    with pytest.raises(ConfigError) as info:
        resolve(cfg)
    msg = str(info.value)
    assert f"strategy={strategy} does not run on benchmark={benchmark}" in msg
    assert "benchmark.scenario=class_incremental" in msg and reason in msg
    assert "needs the task id at test time" in msg and "\n" not in msg


def test_split_mnist_defaults_to_class_incremental():
    """The registry-driven runs of split_mnist are class-incremental runs."""
    assert BENCHMARKS.get("split_mnist").config().scenario.value == "class_incremental"


@pytest.mark.usefixtures("mnist_small_test_set")
def test_naive_sgd_learns_real_mnist_and_writes_the_angles(tmp_path, mnist_root):
    """2 tasks of 1,000 real MNIST images (100 steps at batch 10 each): each task is far above
    chance (10%) right after training on it; the rotation table is in the run folder."""
    summary, out = run_short(tmp_path, mnist_root, ["benchmark.num_tasks=2"])
    matrix = pd.read_csv(out / "accuracy_matrix.csv", index_col=0)
    assert matrix.shape == (2, 2) and min(matrix.iloc[i, i] for i in range(2)) > 0.5
    assert pd.read_csv(out / "angles.csv")["angle_degrees"].tolist() == [0.0, 9.0]


@pytest.mark.usefixtures("mnist_small_test_set")
def test_mcsgd_line_phase_lowers_its_objective(tmp_path, mnist_root):
    summary, _ = run_short(tmp_path, mnist_root, ["strategy=mcsgd", "strategy.subset_size=100",
                                                  "strategy.line_samples=3",
                                                  "benchmark.train_samples_per_task=500"])
    history = summary["strategy_stats"]["line_phase"]
    assert [h["task"] for h in history] == [2, 3]
    for h in history:
        assert h["line_loss_after"] < h["line_loss_before"]
    assert summary["strategy_stats"]["episodic_memory_size"] == 30  # 1 per class x 10 x 3 tasks


@pytest.mark.slow
def test_mcsgd_forgets_less_than_naive_in_the_same_regime(tmp_path, mnist_root):
    """Real data, large rotations so that naive fine-tuning forgets: with the same continual
    regime, MC-SGD's line phase must keep more of the old tasks."""
    # measured on seeds 1 and 2: naive 0.60 accuracy / 0.46 forgetting, MC-SGD 0.65-0.66 / 0.13-0.15
    common = ["benchmark.angle_step=45", "benchmark.train_samples_per_task=10000",
              "optimizer.lr=0.1", "optimizer.gamma=0.8", "benchmark.batch_size=64",
              "model.dropout=0.2"]
    naive, _ = run_short(tmp_path / "naive", mnist_root, ["strategy=naive"] + common)
    mcsgd, _ = run_short(tmp_path / "mcsgd", mnist_root, ["strategy=mcsgd"] + common)
    assert mcsgd["forgetting"] < naive["forgetting"] - 0.2
    assert mcsgd["average_accuracy"] > naive["average_accuracy"] + 0.02


def test_failed_run_is_recorded(tmp_path):
    run = compose_run(SHORT + [f"data.root={tmp_path / 'nowhere'}", "data.download=false"])
    with pytest.raises(DatasetNotFoundError):
        run_experiment(run, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "MNIST not found" in summary["error"]


@pytest.mark.usefixtures("mnist_small_test_set")
def test_diverged_training_fails_the_run_instead_of_completing(tmp_path, mnist_root):
    run = compose_run(SHORT + [f"data.root={mnist_root}", "optimizer.lr=1e6",
                               "benchmark.train_samples_per_task=300"])
    with pytest.raises(TrainingDivergedError, match="task 1"):
        run_experiment(run, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "diverged" in summary["error"]
    # no row and no resume state of the diverged task (issue 30: a relaunch would go on from
    # its NaN weights); tests/test_data_safety.py relaunches such runs
    assert not (tmp_path / "accuracy_matrix.csv").exists()
    assert not (tmp_path / "resume.pt").exists()
