"""scripts/mcsgd_line_probe.py (issue 33): it measures the line phase without changing the run,
and what it measures agrees with the run's own evaluation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from cl_runner.api import run
from cl_runner.strategies.mcsgd import MCSGD

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mcsgd_line_probe.py"
OVERRIDES = ["strategy=mcsgd", "benchmark=rotated_mnist", "benchmark.num_tasks=3",
             "benchmark.train_samples_per_task=1000", "strategy.subset_size=100",
             "progress=false", "hardware.num_threads=1"]


def load_script():
    spec = importlib.util.spec_from_file_location("mcsgd_line_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("train_mode", "counterfactual"), [(False, False), (True, True)])
def test_probe_leaves_the_run_unchanged_and_agrees_with_it(tmp_path, mnist_root, train_mode,
                                                           counterfactual):
    overrides = [*OVERRIDES, f"strategy.line_train_mode={str(train_mode).lower()}"]
    plain = run(overrides, out_dir=tmp_path / "plain")
    probed, rows, losses = load_script().probe(tmp_path / "probe", overrides, masks=2,
                                               counterfactual=counterfactual)
    # the dropout masks it draws for its own measurements do not reach the run
    pd.testing.assert_frame_equal(probed.accuracy_matrix, plain.accuracy_matrix)
    assert MCSGD.line_phase.__qualname__ == "MCSGD.line_phase"  # restored
    assert list(rows.task) == [2, 3]
    matrix = plain.accuracy_matrix.to_numpy()
    for t in (2, 3):
        row = rows[rows.task == t].iloc[0]
        # its test accuracies at w_bar_t (and at w_bar_{t-1}) are the run's own cells
        assert row.old_acc_w_bar == pytest.approx(matrix[t - 1, : t - 1].mean(), abs=1e-9)
        assert row.new_acc_w_bar == pytest.approx(matrix[t - 1, t - 1], abs=1e-9)
        assert row.old_acc_w_prev == pytest.approx(matrix[t - 2, : t - 1].mean(), abs=1e-9)
        assert row.moved > 0 and row.w_hat_to_prev > row.w_bar_to_prev
    # 11 points x 2 terms x before/after (and after the other mode) per task
    assert len(losses) == 2 * 11 * 2 * (3 if counterfactual else 2)
    if counterfactual:  # the other mode's phase ran (moved) and ended elsewhere
        assert (rows.other_moved > 0).all() and (rows.other_to_own_mode > 0).all()
