"""``cl-run`` as a user runs it: a subprocess with overrides, files in the chosen folder, and
its output through a pipe (as in CI or ``make run | tee log``) readable: one line per log
record, paths whole, no colour codes; ``make help`` piped has no colour codes either."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def test_cl_run_subprocess_writes_run_files(tmp_path, mnist_root):
    # a path far longer than 80 columns (rich wrapped piped output at 80 and padded log lines)
    out = tmp_path / ("a_run_folder_whose_name_is_long_" * 4) / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env["CL_RUNNER_DATA"] = str(mnist_root)
    proc = subprocess.run(
        [sys.executable, "-m", "cl_runner", "strategy=mcsgd", "benchmark=permuted_mnist",
         "benchmark.num_tasks=2", "benchmark.train_samples_per_task=200", "seed=7",
         "strategy.subset_size=50", "strategy.line_samples=2", "hardware.num_threads=1",
         "progress=false", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "average accuracy" in proc.stdout
    # stdout and stderr are pipes here: plain text, one line per record, the path whole
    assert "\x1b[" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"run folder: {out}" in lines
    ready = [line for line in lines if "data ready" in line]
    assert len(ready) == 1 and ready[0].endswith("strategy mcsgd, model mlp (269322 parameters)")
    assert " INFO " in ready[0] and len(ready[0]) > 100
    assert len([line for line in lines if "task  2/2" in line and "avg acc on tasks 1..2" in line]) == 1
    assert not [line for line in lines if line != line.rstrip()]  # no padding to a width
    for name in ("accuracy_matrix.csv", "metrics.csv", "summary.json", "permutations.csv",
                 ".hydra/config.yaml", "cli.log"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["seed"] == 7
    assert summary["config"]["benchmark"]["train_samples_per_task"] == 200
    assert pd.read_csv(out / "accuracy_matrix.csv", index_col=0).shape == (2, 2)
    assert "task  2/2" in (out / "cli.log").read_text()


def test_make_help_has_no_colour_codes_when_piped():
    proc = subprocess.run(["make", "--no-print-directory", "help"], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
                          env={k: v for k, v in os.environ.items() if k != "MAKEFLAGS"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    assert any(line.startswith("  test       the fast test suite")
               for line in proc.stdout.splitlines()), proc.stdout


def test_an_unknown_key_added_with_plus_is_refused_naming_the_closest(tmp_path, mnist_root):
    """Issue 34: ``cl-run strategy=mcsgd +strategy.lmc_lrr=0.1`` ran with the key ignored."""
    env = dict(os.environ, CL_RUNNER_DATA=str(mnist_root))
    proc = subprocess.run([sys.executable, "-m", "cl_runner", "strategy=mcsgd",
                           "+strategy.lmc_lrr=0.1", "progress=false", "benchmark.num_tasks=2",
                           "benchmark.train_samples_per_task=300", "hardware.num_threads=1",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown config key: strategy.lmc_lrr (did you mean strategy.lmc_lr?)" in \
        proc.stderr.replace("\n", " ")
    assert not (tmp_path / "run" / "summary.json").exists()
