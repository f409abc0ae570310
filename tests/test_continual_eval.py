"""Continual evaluation (issue 15, De Lange et al., ICLR 2023): the metrics against
hand-computed values, the hook changes no training number, its curves survive a resume, and
bad settings are refused before any data are read."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from cl_runner.errors import ConfigError
from cl_runner.experiment import run_experiment
from cl_runner.results.continual_metrics import EvalRow, continual_metrics
from cl_runner.training.continual_eval import CONTINUAL_EVAL, read_continual_eval
from tests.conftest import compose_run, run_crashing_after_task

SHORT = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=200", "progress=false",
         "hardware=cpu", "hardware.num_threads=1"]


def rows_of(points: list[tuple[int, str, list[float]]]) -> list[EvalRow]:
    """Rows from ``(task, point, [accuracy on tasks 1..k])`` in run order."""
    out, step = [], 0
    for task, point, accs in points:
        step += 10
        out += [EvalRow(step, step, task, point, t, a, 0.0) for t, a in enumerate(accs, 1)]
    return out


def test_metrics_against_hand_computed_values():
    rows = rows_of([
        (1, "step", [0.5]), (1, "task_end", [0.9]),
        (2, "step", [0.6, 0.4]), (2, "step", [0.8, 0.7]), (2, "task_end", [0.85, 0.95]),
        (3, "step", [0.7, 0.5, 0.3]), (3, "task_end", [0.8, 0.9, 0.97]),
    ])
    m = continual_metrics(rows, 3)
    # task 1 after its end: 0.6 0.8 0.85 0.7 0.8 -> 0.6; task 2 after its end: 0.5 0.9 -> 0.5
    assert m["minimum_accuracy_per_task"] == pytest.approx([0.6, 0.5])
    assert m["min_acc"] == pytest.approx(0.55)
    assert m["wc_acc"] == pytest.approx(0.97 / 3 + (2 / 3) * 0.55)  # 0.69
    # task 2: task 1 falls from 0.9 to 0.6 (0.3); task 3: 0.85 -> 0.7 (0.15), 0.95 -> 0.5 (0.45)
    assert m["stability_gap_depth_per_task"] == pytest.approx([0.3, 0.3])
    assert m["stability_gap_depth"] == pytest.approx(0.3)


def test_metrics_of_a_run_that_never_drops_and_of_one_task():
    flat = rows_of([(1, "task_end", [0.9]), (2, "step", [0.95, 0.2]), (2, "task_end", [0.9, 0.8])])
    m = continual_metrics(flat, 2)
    assert m["stability_gap_depth_per_task"] == [0.0]  # never below the value at the switch
    assert m["min_acc"] == pytest.approx(0.9)
    one = continual_metrics(rows_of([(1, "task_end", [0.7])]), 1)
    assert math.isnan(one["min_acc"]) and one["wc_acc"] == pytest.approx(0.7)
    cut = continual_metrics(rows_of([(1, "task_end", [0.7])]), 3)  # stopped after task 1
    assert math.isnan(cut["wc_acc"]) and math.isnan(cut["stability_gap_depth"])


@pytest.mark.usefixtures("mnist_small_test_set")
def test_training_numbers_are_identical_with_and_without_continual_evaluation(tmp_path,
                                                                           mnist_root):
    base = SHORT + [f"data.root={mnist_root}"]
    off = run_experiment(compose_run(base), tmp_path / "off")
    on = run_experiment(compose_run(base + ["eval.every_steps=7", "eval.subset_size=300"]),
                        tmp_path / "on")
    for name in ("accuracy_matrix.csv", "metrics.csv"):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes()
    assert "min_acc" not in off and not (tmp_path / "off" / CONTINUAL_EVAL).exists()

    frame = pd.read_csv(tmp_path / "on" / CONTINUAL_EVAL)
    steps_per_task = 200 // compose_run(base).benchmark.batch_size
    periodic = frame[frame.point == "step"]
    assert (periodic.global_step % 7 == 0).all()
    assert periodic.global_step.nunique() == (3 * steps_per_task) // 7
    # every point evaluates tasks 1..k of the task k being trained, never a later one
    assert (frame.eval_task <= frame.task).all()
    assert frame.groupby(["global_step", "point"]).size().tolist() == \
        frame.groupby(["global_step", "point"]).task.first().tolist()
    ends = frame[frame.point == "task_end"]
    assert sorted(ends.global_step.unique()) == [steps_per_task * t for t in (1, 2, 3)]
    assert ((frame.accuracy * 300).round(6) % 1 == 0).all()  # scored on 300 images per task
    summary = json.loads((tmp_path / "on" / "summary.json").read_text())
    expected = continual_metrics(read_continual_eval(tmp_path / "on" / CONTINUAL_EVAL), 3)
    assert summary["min_acc"] == pytest.approx(expected["min_acc"])
    assert summary["wc_acc"] == pytest.approx(expected["wc_acc"])
    assert on["continual_eval_points"] == periodic.global_step.nunique() + 3


@pytest.mark.usefixtures("mnist_small_test_set")
def test_curves_of_a_resumed_run_equal_an_uninterrupted_runs(tmp_path, mnist_root, monkeypatch):
    overrides = SHORT + [f"data.root={mnist_root}", "eval.every_steps=5"]
    run_experiment(compose_run(overrides), tmp_path / "whole")
    run_crashing_after_task(monkeypatch, compose_run(overrides), tmp_path / "split")
    summary = run_experiment(compose_run(overrides), tmp_path / "split")
    assert summary["resumed_after_task"] == 1
    assert (tmp_path / "split" / CONTINUAL_EVAL).read_bytes() == \
        (tmp_path / "whole" / CONTINUAL_EVAL).read_bytes()


@pytest.mark.parametrize("overrides, message", [
    (["strategy=supsup", "model=masked_mlp", "eval.every_steps=10"], "does not support"),
    (["eval.every_steps=0"], "at least 1"),
    (["eval.every_steps=10", "eval.subset_size=0"], "at least 1"),
])
def test_bad_settings_are_refused_before_data_are_read(tmp_path, overrides, message):
    run = compose_run(SHORT + ["data.root=/nonexistent", "data.download=false", *overrides])
    with pytest.raises(ConfigError, match=message):
        run_experiment(run, tmp_path / "run")


@pytest.mark.usefixtures("mnist_small_test_set")
def test_every_examples_samples_runs_of_different_batch_sizes_alike(tmp_path, mnist_root):
    """Issue 34 item 7: ``eval.every_examples`` spaces the points by stream examples, so a run
    at batch 10 (20 steps per task) and one at batch 20 (10 steps) are evaluated at the same
    fractions of each task; ``every_steps`` would give one twice the points of the other."""
    from cl_runner.summarize.continual import one_point_per_step, task_position

    positions = []
    for batch in (10, 20):
        run_experiment(compose_run(SHORT[:1] + ["benchmark.num_tasks=2"] + SHORT[1:] + [
            f"data.root={mnist_root}", f"benchmark.batch_size={batch}",
            "eval.every_examples=40", "eval.subset_size=100"]), tmp_path / f"b{batch}")
        frame = one_point_per_step(pd.read_csv(tmp_path / f"b{batch}" / CONTINUAL_EVAL))
        frame = frame[frame.eval_task == 1]
        positions.append(task_position(frame).round(9).tolist())
    assert positions[0] == positions[1] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]


def test_every_steps_and_every_examples_together_are_refused(tmp_path):
    run = compose_run(SHORT + ["data.root=/nonexistent", "data.download=false",
                               "eval.every_steps=5", "eval.every_examples=50"])
    with pytest.raises(ConfigError, match="set one of them"):
        run_experiment(run, tmp_path / "run")
    assert not (tmp_path / "run").exists()
