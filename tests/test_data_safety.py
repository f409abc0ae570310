"""Data safety, round 3 (issue 30): a diverged task never reaches the resume state, the
checkpoint index survives a resume, one run folder takes one process at a time, a refused
resume changes no file, a result is trusted only when its files match its config, every
attempt of a resumed run is recorded, one manifest of the files a run writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cl_runner.errors import TrainingDivergedError
from cl_runner.experiment import run_experiment
from cl_runner.results import run_folder as rf
from tests.conftest import compose_run

pytestmark = pytest.mark.usefixtures("one_thread", "mnist_small_test_set")

TINY = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=300", "progress=false",
        "hardware=cpu", "hardware.num_threads=1"]


def tiny(mnist_root: Path, *extra: str):
    return compose_run([*TINY, f"data.root={mnist_root}", *extra])


# ------------------------------------------------------------- 1. a diverged task is never kept

def test_a_diverged_run_never_becomes_complete(tmp_path, mnist_root):
    """The issue's commands: the same diverging run launched four times into one folder.
    Before the fix, each launch resumed from the NaN weights the previous one saved and the
    fourth was ``complete``; now each one reruns from its last good state and fails again."""
    for _ in range(4):
        with pytest.raises(TrainingDivergedError, match="task 1"):
            run_experiment(tiny(mnist_root, "optimizer.lr=1e6"), tmp_path)
        summary = rf.read_summary(tmp_path)
        assert summary["status"] == "failed" and "resumed_after_task" not in summary
        assert not (tmp_path / rf.RESUME_FILE).exists()  # task 1 diverged: nothing good to keep
        assert not (tmp_path / rf.ACCURACY_MATRIX).exists()  # no row of a diverged task


def test_a_run_diverging_at_task_2_reruns_from_task_1(tmp_path, mnist_root):
    """MC-SGD's line phase diverges at task 2: the resume state stays that of task 1 (finite
    weights), the files hold task 1's row only, and a relaunch resumes after task 1 and
    diverges again instead of going on from NaN weights."""
    run = ["strategy=mcsgd", "strategy.lmc_lr=1e30", "strategy.subset_size=50",
           "strategy.lmc_batch_size=10", "strategy.line_samples=2"]
    for attempt in range(2):
        with pytest.raises(TrainingDivergedError, match="line-phase loss of task 2"):
            run_experiment(tiny(mnist_root, *run), tmp_path)
        state = torch.load(tmp_path / rf.RESUME_FILE, weights_only=False)
        assert state["task"] == 1
        assert all(torch.isfinite(v).all() for v in state["model"].values())
        assert rf.read_accuracy_matrix(tmp_path / rf.ACCURACY_MATRIX).shape == (1, 3)
        summary = rf.read_summary(tmp_path)
        assert summary["status"] == "failed"
        assert summary.get("resumed_after_task") == (1 if attempt else None)

