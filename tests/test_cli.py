"""``cl-run`` as a user runs it: a subprocess with overrides, files in the chosen folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd


def test_cl_run_subprocess_writes_run_files(tmp_path, mnist_root):
    out = tmp_path / "run"
    env = dict(os.environ, CL_RUNNER_DATA=str(mnist_root))
    proc = subprocess.run(
        [sys.executable, "-m", "cl_runner", "strategy=mcsgd", "benchmark=permuted_mnist",
         "benchmark.num_tasks=2", "benchmark.train_samples_per_task=200", "seed=7",
         "strategy.subset_size=50", "strategy.line_samples=2", "hardware.num_threads=1",
         "progress=false", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "average accuracy" in proc.stdout
    for name in ("accuracy_matrix.csv", "metrics.csv", "summary.json", "permutations.csv",
                 ".hydra/config.yaml", "cli.log"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["seed"] == 7
    assert summary["config"]["benchmark"]["train_samples_per_task"] == 200
    assert pd.read_csv(out / "accuracy_matrix.csv", index_col=0).shape == (2, 2)
    assert "task  2/2" in (out / "cli.log").read_text()
