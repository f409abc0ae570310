"""cl-summarize with continual evaluation (issue 15): the x position in tasks, the mean and
sample std over seeds point by point against hand-computed values, the continual metrics in
the table, the plots written (and looked at: docs/results/stability_gap.md)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cl_runner import summarize as S
from cl_runner.summarize.continual import group_curves, task_position
from tests.test_summarize import make_run

COLUMNS = ["step", "global_step", "task", "point", "eval_task", "accuracy", "loss"]


def continual_rows(steps: int, accs: dict[str, list[float]]) -> pd.DataFrame:
    """2 tasks of ``steps`` steps, a periodic point half-way and the task end: accs holds
    task 1's accuracy at the 4 points and task 2's at the last 2."""
    half = steps // 2
    rows = [(half, half, 1, "step", 1, accs["t1"][0]), (steps, steps, 1, "task_end", 1, accs["t1"][1]),
            (half, steps + half, 2, "step", 1, accs["t1"][2]),
            (half, steps + half, 2, "step", 2, accs["t2"][0]),
            (steps, 2 * steps, 2, "task_end", 1, accs["t1"][3]),
            (steps, 2 * steps, 2, "task_end", 2, accs["t2"][1])]
    return pd.DataFrame([[*r, 0.0] for r in rows], columns=COLUMNS)


def with_continual(folder, frame, metrics: dict) -> None:
    frame.to_csv(folder / "continual_eval.csv", index=False)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, **metrics}))


def test_task_position_puts_task_switches_at_integers():
    frame = continual_rows(10, {"t1": [0.5, 0.9, 0.6, 0.8], "t2": [0.7, 0.9]})
    assert task_position(frame).tolist() == [0.5, 1.0, 1.5, 1.5, 2.0, 2.0]
    other = continual_rows(4, {"t1": [0.5, 0.9, 0.6, 0.8], "t2": [0.7, 0.9]})
    assert task_position(other).tolist() == task_position(frame).tolist()  # other batch size


@pytest.fixture()
def sweep(tmp_path):
    root = tmp_path / "sweep"
    m = [[0.9, 0.1], [0.6, 0.9]]
    a = make_run(root, "naive_1", "naive", 1, m, avg=0.75)
    b = make_run(root, "naive_2", "naive", 2, m, avg=0.75)
    c = make_run(root, "mcsgd_1", "mcsgd", 1, m, avg=0.75)
    with_continual(a, continual_rows(10, {"t1": [0.5, 0.9, 0.4, 0.6], "t2": [0.7, 0.9]}),
                   {"min_acc": 0.4, "wc_acc": 0.65, "stability_gap_depth": 0.5})
    with_continual(b, continual_rows(10, {"t1": [0.7, 0.9, 0.6, 0.8], "t2": [0.5, 0.9]}),
                   {"min_acc": 0.6, "wc_acc": 0.75, "stability_gap_depth": 0.3})
    with_continual(c, continual_rows(4, {"t1": [0.5, 0.9, 0.8, 0.85], "t2": [0.7, 0.95]}),
                   {"min_acc": 0.8, "wc_acc": 0.875, "stability_gap_depth": 0.1})
    return root


def test_curves_mean_and_std_over_seeds_and_the_metrics_table(sweep, tmp_path):
    summary = S.summarize([sweep], out=tmp_path / "out")
    naive = next(g for g in summary.groups if "naive" in g.values)
    curves = group_curves(naive)
    task1 = curves[curves.eval_task == 1].set_index("x")
    # x = 1.5: task 1 at 0.4 (seed 1) and 0.6 (seed 2) -> mean 0.5, sample std 0.1414
    assert task1.loc[1.5, "mean"] == pytest.approx(0.5)
    assert task1.loc[1.5, "std"] == pytest.approx(0.1414214, abs=1e-6)
    assert task1["n"].tolist() == [2, 2, 2, 2]
    table = summary.table.set_index(["strategy", "metric"])
    assert table.loc[("naive", "min_acc"), "mean"] == pytest.approx(0.5)
    assert table.loc[("naive", "stability_gap_depth"), "mean"] == pytest.approx(0.4)
    assert table.loc[("mcsgd", "wc_acc"), "mean"] == pytest.approx(0.875)
    names = {p.name for p in summary.files}
    assert {"stability_gap_rotated_mnist.png", "stability_gap_rotated_mnist.pdf",
            "continual_eval_rotated_mnist.png", "gap_profile_rotated_mnist.png"} <= names


def test_gap_profile_against_hand_computed_drops(sweep):
    from cl_runner.summarize.continual import PROFILE_BINS, run_gap_profile

    frame = pd.read_csv(sweep / "naive_1" / "continual_eval.csv")
    profile = run_gap_profile(frame)
    # task 2, task 1 evaluated: 0.4 half-way (step 5 of 10), 0.6 at the end; at the switch 0.9
    assert profile.loc[(10 + 0.5) / PROFILE_BINS] == pytest.approx(0.4 - 0.9)
    assert profile.loc[(19 + 0.5) / PROFILE_BINS] == pytest.approx(0.6 - 0.9)
    assert len(profile) == 2


def test_runs_without_continual_evaluation_get_no_curves_and_no_columns(tmp_path):
    root = tmp_path / "plain"
    make_run(root, "naive_1", "naive", 1, [[0.9, 0.1], [0.6, 0.9]], avg=0.75)
    summary = S.summarize([root], out=tmp_path / "out")
    assert "min_acc" not in summary.metrics
    assert not [p for p in summary.files if "stability_gap" in p.name]


def dividing_rows(steps: int, every: int, end_acc: float) -> pd.DataFrame:
    """One task of ``steps`` steps evaluated every ``every`` steps where ``every`` divides
    ``steps``: the last periodic point and the task end share step ``steps``; the periodic
    point there reads 0.5, the task end ``end_acc`` (evaluated after ``after_training``)."""
    rows = [(s, s, 1, "step", 1, 0.5) for s in range(every, steps + 1, every)]
    rows.append((steps, steps, 1, "task_end", 1, end_acc))
    return pd.DataFrame([[*r, 0.0] for r in rows], columns=COLUMNS)


def test_task_end_point_kept_when_every_steps_divides_the_task(tmp_path):
    """Issue 34 item 7: the periodic point and the task end share one x; both used to be
    dropped (the count check saw 2 rows per run). The task end is kept, once."""
    root = tmp_path / "sweep"
    for seed, end in ((1, 0.9), (2, 0.7)):
        folder = make_run(root, f"naive_{seed}", "naive", seed, [[0.9, 0.1], [0.6, 0.9]],
                          avg=0.75)
        with_continual(folder, dividing_rows(10, 5, end), {"min_acc": 0.5})
    summary = S.summarize([root], out=tmp_path / "out", plots=False)
    curves = group_curves(summary.groups[0]).set_index("x")
    assert curves.index.tolist() == [0.5, 1.0]  # the task end is there, once
    assert curves.loc[1.0, "mean"] == pytest.approx(0.8)  # the task-end values, not 0.5
    assert curves.loc[1.0, "n"] == 2
