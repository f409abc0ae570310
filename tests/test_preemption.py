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
from types import SimpleNamespace

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


def wait_for_task_1(launcher: subprocess.Popen, sweep: Path, timeout: float = 300.0) -> None:
    """Wait until the sweep's job finished task 1 and saved its state (``resume.pt``)."""
    deadline = time.monotonic() + timeout
    while not list(sweep.glob("*/resume.pt")):
        assert launcher.poll() is None, launcher.communicate()
        assert time.monotonic() < deadline, "no resume state appeared"
        time.sleep(0.005)


@pytest.mark.slow
def test_submitit_preempted_job_is_requeued_and_resumes_byte_identical(tmp_path, mnist_root):
    args = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=3000", *RUN]
    whole = cl_run([*args, f"hydra.run.dir={tmp_path / 'whole'}"], mnist_root)
    assert whole.wait(300) == 0, whole.communicate()

    sweep = tmp_path / "sweep"
    launcher = cl_run(["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
                       *args], mnist_root)
    job_process = submitit_job_process(launcher)
    wait_for_task_1(launcher, sweep)
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


def test_time_limit_not_requeued_is_interrupted_and_resumes(tmp_path, mnist_root, monkeypatch):
    """Issue 30, defect 8: past ``max_num_timeout`` submitit's time-limit handler raises its
    ``UncompletedJobError`` inside the run (here at the start of task 2, after task 1 was
    saved). The run is interrupted (resumable), not failed, and running it again resumes."""
    from submitit.core.utils import UncompletedJobError

    from cl_runner import api
    from cl_runner.resume import InterruptHook

    monkeypatch.setenv("CL_RUNNER_DATA", str(mnist_root))
    args = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=300", *RUN]
    before_task = InterruptHook.before_task

    def time_limit(self, ctx):
        if self.tasks_done == 1:
            raise UncompletedJobError("Job not requeued because: timed-out too many times.")
        before_task(self, ctx)

    monkeypatch.setattr(InterruptHook, "before_task", time_limit)
    with pytest.raises(UncompletedJobError):
        api.run(args, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted", summary
    assert summary["resume_state"] == "resume.pt" and (tmp_path / "run" / "resume.pt").is_file()

    monkeypatch.setattr(InterruptHook, "before_task", before_task)
    result = api.run(args, tmp_path / "run")
    assert result.summary["status"] == "complete"
    assert result.summary["resumed_after_task"] == 1


def test_jobs_without_a_result_are_reported_in_one_line(tmp_path):
    """Issue 30, defect 10: a job that left no result (``scancel``: submitit raises
    ``UncompletedJobError`` while collecting it) or that stopped at its time limit without a
    requeue becomes a failed job whose error is one line naming the job, the scheduler's state
    and its folder's state; other results pass through unchanged."""
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import UncompletedJobError

    from cl_runner.submitit_launchers import OneLineReports, SweepJobStopped

    folder = tmp_path / "seed=1"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    (folder / "resume.pt").write_bytes(b"state")

    class Launcher(OneLineReports):
        params = {"max_num_timeout": 0}

        def _job_folder(self, overrides):
            return str(folder)

    class Job:
        job_id, state = "7", "CANCELLED by 0"
        paths = SimpleNamespace(stderr=tmp_path / ".submitit/7/7_0_log.err")

        def __init__(self, outcome):
            self.outcome = outcome

        def results(self):
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return [self.outcome]

    def report(outcome) -> str:
        ret = Launcher()._collect(Job(outcome), ["seed=1"], 0)
        assert ret.status == JobStatus.FAILED
        with pytest.raises(SweepJobStopped) as caught:
            _ = ret.return_value
        assert "\n" not in str(caught.value)
        return str(caught.value)

    cancelled = report(UncompletedJobError("Job 7 (task: 0) with path ...\nhas not produced "
                                           "any output (state: CANCELLED by 0)\n..."))
    assert cancelled.startswith("sweep job #0 (seed=1) ended without a result (submitit job 7, "
                                "state CANCELLED by 0; log ")
    assert f"{folder} says interrupted (with the resume state of its finished tasks)" in cancelled
    assert cancelled.endswith("run the same sweep command again (same hydra.sweep.dir) to "
                              "resume it")
    timed_out = report(JobReturn(status=JobStatus.FAILED, _return_value=UncompletedJobError(
        "Job not requeued because: timed-out too many times.")))
    assert ("reached its time limit and was not requeued (hydra.launcher.max_num_timeout=0)"
            in timed_out)

    done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)
    failed = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("a bug"))
    for ret in (done, failed):
        assert Launcher()._collect(Job(ret), ["seed=1"], 0) is ret


@pytest.mark.slow
def test_submitit_local_job_stopped_reports_one_line_and_resumes(tmp_path, mnist_root):
    """A job stopped by SIGTERM after task 1 (as ``scancel`` does on SLURM) leaves no result:
    ``cl-run -m`` ends with one line, not submitit's traceback; the folder says interrupted
    and the same sweep command resumes it."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
            "benchmark.num_tasks=3", "benchmark.train_samples_per_task=1000", *RUN]
    launcher = cl_run(args, mnist_root)
    job_process = submitit_job_process(launcher)
    wait_for_task_1(launcher, sweep)
    job_process.suspend()  # so that the signal lands in task 2 however fast the machine
    job_process.send_signal(signal.SIGTERM)
    job_process.resume()
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 1, err
    assert "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith("sweep job #0")]
    assert "ended without a result" in line and "says interrupted" in line, line
    (job,) = job_folders(sweep)
    assert json.loads((job / "summary.json").read_text())["status"] == "interrupted"

    again = cl_run(args, mnist_root)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["resumed_after_task"] in (1, 2)


def test_interrupt_message_says_whether_slurm_requeued_the_job(tmp_path, monkeypatch):
    """Issue 30, defect 10: after ``scontrol requeue`` (its ``Restarts`` count above the job's
    ``SLURM_RESTART_COUNT``) the job resumes by itself; after ``scancel`` the sweep command
    resumes it; outside SLURM the message is the command. ``scontrol`` is a stand-in here
    (tests/test_slurm.py asks the real one)."""
    from cl_runner import slurm

    again = "the same sweep command again (same hydra.sweep.dir)"
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert slurm.resume_advice(again) == f"run {again} to resume"

    scontrol = tmp_path / "scontrol"
    scontrol.write_text('#!/bin/sh\n[ -n "$FAIL" ] && exit 1\n'
                        'echo "JobId=$4 JobName=cli JobState=COMPLETING Restarts=$RESTARTS"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "33")
    monkeypatch.setenv("RESTARTS", "1")
    assert slurm.requeued("33") is True
    assert slurm.resume_advice(again) == ("SLURM requeued job 33: it resumes by itself when it "
                                          "starts again")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued job, then cancelled
    assert slurm.resume_advice(again) == (f"SLURM job 33 was not requeued (cancelled); run "
                                          f"{again} to resume")
    monkeypatch.setenv("FAIL", "1")
    assert slurm.requeued("33") is None
    assert slurm.resume_advice(again).startswith("if SLURM requeues job 33 it resumes by itself")
