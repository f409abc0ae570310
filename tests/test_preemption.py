"""Sweeps through Hydra's submitit launcher (issue 11 part 2), end to end on this machine with
``hydra/launcher=submitit_local``: each job runs as its own process, as on SLURM.

- a 1-job sweep runs and writes a complete run folder;
- a preempted job (submitit's preemption/timeout signal, USR2, sent to the job's process
  after task 1) is checkpointed and requeued by submitit, the requeued job continues after
  the last finished task, and its files are byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

RUN = ["progress=false", "hardware=cpu", "hardware.num_threads=1"]
RESULT_FILES = ("accuracy_matrix.csv", "metrics.csv")


def cl_run(args: list[str], mnist_root: Path) -> subprocess.Popen:
    env = {**os.environ, "CL_RUNNER_DATA": str(mnist_root), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "cl_runner", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def job_folders(sweep_dir: Path) -> list[Path]:
    """The sweep's run folders (those holding a summary.json), whatever their names."""
    return sorted(p.parent for p in sweep_dir.glob("*/summary.json"))


def submitit_job_process(launcher: subprocess.Popen, timeout: float = 60.0) -> psutil.Process:
    """The process running the job (``python -m submitit.core._submit``), a descendant of the
    ``cl-run -m`` process (through submitit's local controller)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if "submitit.core._submit" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.01)
    raise AssertionError("no submitit job process appeared")


def test_submitit_local_one_job_sweep(tmp_path, mnist_root):
    sweep = tmp_path / "sweep"
    proc = cl_run(["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
                   "benchmark.num_tasks=2", "benchmark.train_samples_per_task=300", *RUN],
                  mnist_root)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (job,) = job_folders(sweep)
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["num_tasks"] == 2
    rows = (job / "accuracy_matrix.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + one row per task
    assert not (job / "resume.pt").exists()  # complete: nothing left to resume


@pytest.mark.slow
def test_submitit_preempted_job_is_requeued_and_resumes_byte_identical(tmp_path, mnist_root):
    args = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=3000", *RUN]
    whole = cl_run([*args, f"hydra.run.dir={tmp_path / 'whole'}"], mnist_root)
    assert whole.wait(300) == 0, whole.communicate()

    sweep = tmp_path / "sweep"
    launcher = cl_run(["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
                       *args], mnist_root)
    job_process = submitit_job_process(launcher)
    deadline = time.monotonic() + 300
    while not list(sweep.glob("*/resume.pt")):  # task 1 finished and its state saved
        assert launcher.poll() is None, launcher.communicate()
        assert time.monotonic() < deadline, "no resume state appeared"
        time.sleep(0.005)
    job_process.send_signal(signal.SIGUSR2)  # what SLURM sends before a timeout/preemption
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err

    (job,) = job_folders(sweep)
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert 1 <= summary["resumed_after_task"] <= 2
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "preempted" in logs  # submitit's own record
    for name in RESULT_FILES:
        assert (job / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
