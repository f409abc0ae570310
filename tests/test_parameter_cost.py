"""What each strategy stores (``summary.json``'s ``parameter_cost``), counted by hand on tiny
real-MNIST runs, and where cl-run and cl-summarize show the floats stored per task."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from cl_runner.cli import summary_table
from cl_runner.experiment import run_experiment
from cl_runner.summarize import summarize
from tests.conftest import compose_run

# 2 tasks of 300 rotated MNIST images, MLP 784-[64]-10: P = 784*64 + 64 + 64*10 + 10
P = 784 * 64 + 64 + 64 * 10 + 10
TINY = ["benchmark=rotated_mnist", "benchmark.num_tasks=2", "benchmark.train_samples_per_task=300",
        "model.hidden_sizes=[64]", "progress=false", "hardware.num_threads=1", "seed=1"]
#: one stored MNIST example: 784 uint8 pixels (1/4 float each) + int64 label + int64 task id
EXAMPLE = 784 / 4 + 2 + 2


@pytest.fixture(scope="module")
def small_test_set():
    from tests.conftest import use_small_mnist_test_set
    with pytest.MonkeyPatch.context() as patch:
        use_small_mnist_test_set(patch)
        yield


RUNS = {
    "agem": ["strategy=agem"],
    "mcsgd": ["strategy=mcsgd", "strategy.subset_size=50", "strategy.lmc_epochs=1"],
    "er": ["strategy=er", "strategy.memory_size=40"],
    "ewc": ["strategy=ewc", "strategy.fisher_samples=64"],
    "ewc_online": ["strategy=ewc", "strategy.fisher_samples=64", "strategy.mode=online",
                   "seed=2"],
    "naive": ["strategy=naive"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_root, small_test_set) -> tuple:
    """The folder of the runs and each run's summary.json, by name of :data:`RUNS`."""
    root = tmp_path_factory.mktemp("costs")
    summaries = {}
    for name, overrides in RUNS.items():
        run_experiment(compose_run([*TINY, f"data.root={mnist_root}", "data.download=false",
                                    *overrides]), root / name)
        summaries[name] = json.loads((root / name / "summary.json").read_text())
    return root, summaries


def test_episodic_memories_counted(runs):
    _, s = runs
    # A-GEM: 1 example per class per task (10 classes in 300 images)
    agem = s["agem"]
    assert agem["parameter_cost"]["shared_floats"] == P
    assert agem["parameter_cost"]["task_floats"] == [10 * EXAMPLE] * 2 == [2000.0] * 2
    assert agem["parameter_cost"]["state_floats"] == 0
    assert agem["task_cost_floats"] == 2000 and agem["total_cost_floats"] == P + 4000
    assert agem["stores_per_task"] is True

    # MC-SGD: 10 memory examples per task (the authors' MNIST memory: 1 x 10 classes, drawn
    # with replacement), and the anchors w_hat_2, w_bar_2 (an MLP has no BatchNorm buffers)
    mcsgd = s["mcsgd"]
    assert mcsgd["parameter_cost"]["task_floats"] == [2000.0, 2000.0]
    assert mcsgd["parameter_cost"]["state_floats"] == 2 * P
    assert mcsgd["total_cost_floats"] == P + 2 * P + 4000

    # ER: the 40-example buffer, split by the task each held example came from
    er = s["er"]
    per_task = er["strategy_stats"]["memory_per_task"]
    assert sum(per_task.values()) == 40
    assert er["parameter_cost"]["task_floats"] == [EXAMPLE * per_task.get(str(k), 0)
                                                   for k in (1, 2)]
    assert er["total_cost_floats"] == P + 40 * EXAMPLE


def test_ewc_state_counted(runs):
    _, s = runs
    # separate: the Fisher diagonal and anchor of each task, 2 P floats per task
    assert s["ewc"]["parameter_cost"]["task_floats"] == [2.0 * P] * 2
    assert s["ewc"]["total_cost_floats"] == P + 4 * P
    # online: nothing per task, the running Fisher and the last anchor
    online = s["ewc_online"]
    assert online["parameter_cost"]["task_floats"] == [0.0, 0.0]
    assert online["parameter_cost"]["state_floats"] == 2 * P
    assert online["stores_per_task"] is False
    assert s["naive"]["total_cost_floats"] == P and s["naive"]["stores_per_task"] is False


def test_floats_per_task_shown_only_where_stored(runs, tmp_path):
    root, s = runs

    def rows(summary):  # cl-run's end-of-run table as text
        console = Console(width=200, record=True)
        console.print(summary_table(summary))
        return console.export_text()
    assert re.search(r"floats stored per task \(mean\)\s*│\s*2,000\s", rows(s["mcsgd"]))
    assert "per task" not in rows(s["naive"]) and "per task" not in rows(s["ewc_online"])
    assert re.search(rf"floats stored in all \(the model\)\s*│\s*{P:,}\s", rows(s["naive"]))

    # cl-summarize: the column joins the default table; "none" where nothing is per task
    summary = summarize([root], out=tmp_path / "summary", plots=False)
    assert summary.metrics[-2:] == ["task_cost_floats", "total_cost_floats"]
    md = (tmp_path / "summary" / "summary.md").read_text().splitlines()
    row = {name: next(line for line in md if f"| {name} |" in line)
           for name in ("naive", "agem")}
    assert row["naive"].endswith(f"| none | {P} ± n/a |")
    assert row["agem"].endswith(f"| 2000 ± n/a | {P + 4000} ± n/a |")
    assert any(line.startswith("Floats stored: float32 equivalents") for line in md)
