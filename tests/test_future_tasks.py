"""eval.future_tasks (issue 32): which tasks not trained yet the end-of-task evaluation scores;
the cells it evaluates are those of the full matrix, byte for byte, the others are empty, and a
run with empty cells resumes and is accepted as a complete result."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cl_runner.experiment import run_experiment
from cl_runner.results.run_folder import load_summary, read_accuracy_matrix, result_problem
from cl_runner.training.loop import evaluated_tasks
from tests.conftest import compose_run, run_crashing_after_task


def test_evaluated_tasks_by_setting():
    assert list(evaluated_tasks(0, 4, "all")) == [1, 2, 3, 4]
    assert list(evaluated_tasks(2, 4, "all")) == [1, 2, 3, 4]
    assert list(evaluated_tasks(0, 4, "next")) == [1, 2, 3, 4]  # forward transfer's b_i
    assert list(evaluated_tasks(1, 4, "next")) == [1, 2]
    assert list(evaluated_tasks(4, 4, "next")) == [1, 2, 3, 4]
    assert list(evaluated_tasks(0, 4, "none")) == []
    assert list(evaluated_tasks(3, 4, "none")) == [1, 2, 3]
    with pytest.raises(ValueError, match="all, next or none"):
        evaluated_tasks(1, 4, "some")


def _run(folder, mnist_root, future):
    run = compose_run([f"data.root={mnist_root}", "benchmark.num_tasks=3",
                       "benchmark.train_samples_per_task=200", "progress=false",
                       "hardware.num_threads=1", f"eval.future_tasks={future}"])
    return run, run_experiment(run, folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_root):
    """The three runs (1 thread: this module-scoped fixture runs before the per-test
    ``one_thread`` fixture)."""
    out = {}
    for future in ("all", "next", "none"):
        folder = tmp_path_factory.mktemp(future)
        out[future] = (folder, _run(folder, mnist_root, future)[1])
    return out


def test_evaluated_cells_equal_the_full_matrix_and_the_others_are_empty(runs):
    full = pd.read_csv(runs["all"][0] / "metrics.csv", dtype=str, keep_default_na=False)
    for future, empty in (("next", {(1, 3)}), ("none", {(1, 2), (1, 3), (2, 3)})):
        folder = runs[future][0]
        rows = pd.read_csv(folder / "metrics.csv", dtype=str, keep_default_na=False)
        for (_, a), (_, b) in zip(full.iterrows(), rows.iterrows(), strict=True):
            cell = (int(a.train_task), int(a.eval_task))
            if cell in empty:  # empty in the CSV, not a number
                assert b.accuracy == "" and b.loss == "", (future, cell)
            else:  # the same text, digit for digit
                assert (b.accuracy, b.loss) == (a.accuracy, a.loss), (future, cell)
        matrix = read_accuracy_matrix(folder / "accuracy_matrix.csv", 3)
        assert {(i + 1, j + 1) for i in range(3) for j in range(3)
                if math.isnan(matrix[i, j])} == empty
        assert result_problem(folder, load_summary(folder)) is None  # a complete result


def test_metrics_are_the_full_matrix_ones_and_forward_transfer_needs_next(runs):
    full, after_next, after_none = (runs[f][1] for f in ("all", "next", "none"))
    for key in ("average_accuracy", "forgetting", "backward_transfer", "learning_accuracy"):
        assert after_next[key] == full[key] and after_none[key] == full[key], key
    assert after_next["forward_transfer"] == full["forward_transfer"]
    assert math.isnan(after_none["forward_transfer"])
    assert load_summary(runs["none"][0])["forward_transfer"] is None
    assert all(math.isnan(v) for v in after_none["initial_accuracy"])
    assert after_next["initial_accuracy"] == full["initial_accuracy"]


def test_empty_cells_below_the_diagonal_are_still_a_damaged_matrix(tmp_path):
    path = tmp_path / "accuracy_matrix.csv"
    path.write_text("train_task,task_1,task_2\nafter_task_1,0.5,\nafter_task_2,,0.7\n")
    with pytest.raises(ValueError, match="finite fractions"):
        read_accuracy_matrix(path, 2)
    path.write_text("train_task,task_1,task_2\nafter_task_1,0.5,\nafter_task_2,0.6,0.7\n")
    assert math.isnan(read_accuracy_matrix(path, 2)[0, 1])


def test_a_run_with_empty_cells_resumes_to_the_same_result(tmp_path, mnist_root, monkeypatch, runs):
    run = compose_run([f"data.root={mnist_root}", "benchmark.num_tasks=3",
                       "benchmark.train_samples_per_task=200", "progress=false",
                       "hardware.num_threads=1", "eval.future_tasks=next"])
    run_crashing_after_task(monkeypatch, run, tmp_path, task=1)
    run_experiment(run, tmp_path)
    for name in ("accuracy_matrix.csv", "metrics.csv"):
        assert (tmp_path / name).read_bytes() == (runs["next"][0] / name).read_bytes()
