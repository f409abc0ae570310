"""Sweeps on a real SLURM cluster (``make test-slurm``; marked ``slurm``, left out of ``make
test``): ``cl-run -m hydra/launcher=submitit_slurm`` submits real SLURM jobs, and the
scheduler's own actions stop them mid-run.

- a 2-job sweep into a sweep folder, and ``cl-summarize`` over it (the reference runs);
- a job requeued after task 1 (``scontrol requeue``) resumes by itself;
- a job reaching its time limit with ``max_num_timeout=1`` is requeued by submitit and resumes;
  with ``max_num_timeout=0`` it is not requeued: its folder says ``interrupted``, ``cl-run -m``
  ends with one line, and the same sweep command resumes it;
- a ``scancel``-ed job: one line, ``interrupted``, and the same sweep command resumes it;

each ending with result files byte-identical to the uninterrupted job's. Each job is frozen
(``SIGSTOP``) as soon as task 1 is saved, so that the scheduler's signal lands mid-run however
fast or loaded the machine is; SLURM sends ``SIGCONT`` with its ``SIGTERM`` (requeue,
scancel), and a time-limit signal (``USR2``) waits, pending, until the test sends ``SIGCONT``.
A time limit is reached by lowering the running job's ``TimeLimit`` (``scontrol update``) below
``signal_delay_s``; a requeued job is released at once (``StartTime=now``) instead of SLURM's
~2-minute hold.

Needs a SLURM cluster on this machine with accounting (``../shared/tools/slurm-ci.sh start``,
as root: SLURM 22.05 + munge + slurmdbd); without one every test here is skipped, saying why.
Every ``cl-run -m`` runs under ``timeout``; jobs left over by a failed test are cancelled.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytestmark = pytest.mark.slurm

JOB_NAME = "cl-runner-test-slurm"
RUN = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=5000", "progress=false",
       "hardware=cpu", "hardware.num_threads=1"]
#: one core and 1 GB per job; a 10-minute limit and the time-limit signal 3 minutes before it
LAUNCHER = ["hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
            "hydra.launcher.signal_delay_s=180", f"hydra.launcher.name={JOB_NAME}"]
RESULT_FILES = ("accuracy_matrix.csv", "metrics.csv", "angles.csv")
SWEEP_TIMEOUT_S = 300  # the `timeout` of one cl-run -m (a job takes ~10-30 s)


def _cmd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          check=False)


def cluster_missing() -> str | None:
    """Why no SLURM cluster can run these tests, or None when one can."""
    if shutil.which("sbatch") is None:
        return ("no SLURM here (sbatch not on PATH): start a single-node cluster with "
                "`make slurm-up` (root, Debian 12) and run `make test-slurm`")
    try:
        if _cmd("scontrol", "ping").returncode != 0:
            return ("slurmctld does not answer `scontrol ping`: start a cluster with `make slurm-up` "
                    "(root; `make slurm-down` stops it)")
        states = _cmd("sinfo", "-h", "-o", "%t").stdout.split()
        if not {"idle", "mix", "alloc"} & set(states):
            return f"no SLURM node is up (sinfo states: {states})"
        acct = _cmd("sacct", "-n", "-X", "-o", "JobID", "-S", "now-1minute")
        if acct.returncode != 0 or "accounting storage is disabled" in acct.stderr.lower():
            return ("SLURM accounting (slurmdbd) is off: submitit cannot see a cancelled job "
                    "without sacct")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"SLURM does not answer: {exc}"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = cluster_missing()
    if reason is not None:
        pytest.skip(reason)
    yield
    _cmd("scancel", f"--name={JOB_NAME}")  # whatever a failed test left queued or running


class Sweep:
    """One ``cl-run -m`` through SLURM, under ``timeout``, its output in files."""

    def __init__(self, folder: Path, args: list[str], mnist_root: Path, log_name: str) -> None:
        self.folder = folder
        self.args = args
        self.env = {**os.environ, "CL_RUNNER_DATA": str(mnist_root), "PYTHONPATH": str(REPO)}
        self.log = folder.parent / f"{folder.name}.{log_name}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                ["timeout", "-k", "10", str(SWEEP_TIMEOUT_S), sys.executable, "-m", "cl_runner",
                 "-m", *LAUNCHER, *RUN, f"hydra.sweep.dir={folder}", *args],
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, text=True)

    def wait(self) -> tuple[int, str]:
        """Exit status and output of ``cl-run -m``."""
        code = self.proc.wait(SWEEP_TIMEOUT_S + 30)
        return code, self.log.read_text()

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"cl-run -m ended early ({self.proc.returncode}):\n"
                                 f"{self.log.read_text()}")


def job_folder(sweep: Path) -> Path:
    (folder,) = {p.parent for p in sweep.glob("*/summary.json")}
    return folder


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def job_logs(sweep: Path) -> str:
    return "".join(p.read_text() for p in sorted(sweep.glob(".submitit/*/*_log.*")))


def until(what: str, check, timeout: float, step: float = 0.01, sweep: Sweep | None = None):
    """Poll ``check()`` until it returns a true value (returned), failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if sweep is not None:
            sweep.alive()
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def job_process(sweep: Sweep) -> psutil.Process:
    """The running job's Python process (``submitit.core._submit`` on the sweep's folder, the
    task that slurmstepd started; not ``srun``, whose command line holds the same words)."""
    def find():
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or ())
            try:
                if ("submitit.core._submit" in cmdline and str(sweep.folder) in cmdline
                        and proc.parent().name().startswith("slurmstepd")):
                    return proc
            except (psutil.Error, AttributeError):  # gone, or no parent
                continue
        return None
    return until("the job's process", find, 120, step=0.05, sweep=sweep)


def frozen_after_task_1(sweep: Sweep) -> tuple[psutil.Process, str]:
    """Wait until task 1 is saved (``resume.pt``), freeze the job's process (``SIGSTOP``) and
    return it with its SLURM job id."""
    proc = job_process(sweep)
    until("task 1's resume state", lambda: list(sweep.folder.glob("*/resume.pt")), 180,
          step=0.005, sweep=sweep)
    proc.suspend()
    job_id = proc.environ()["SLURM_JOB_ID"]
    return proc, job_id


def job_state(job_id: str) -> str:
    return _cmd("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip()


def release_requeued(job_id: str, *extra: str) -> None:
    """Start a requeued job now instead of after SLURM's ~2-minute hold."""
    until(f"job {job_id} to be requeued (PENDING)", lambda: job_state(job_id) == "PENDING", 120,
          step=0.2)
    done = _cmd("scontrol", "update", f"JobId={job_id}", "StartTime=now", *extra)
    assert done.returncode == 0, done.stderr


def reach_time_limit(proc: psutil.Process, job_id: str) -> None:
    """Lower the frozen job's time limit below ``signal_delay_s`` (180 s) from now, so that
    SLURM sends its time-limit signal (USR2) at its next check (every 30 s); slurmstepd sends
    ``SIGCONT`` with it, so the process goes on and handles it. Wait for that (or, should SLURM
    not continue the process, for USR2 pending and continue it here)."""
    elapsed = _cmd("squeue", "-h", "-j", job_id, "-o", "%M").stdout.strip()  # [M]M:SS
    minutes, seconds = (int(x) for x in elapsed.split(":")[-2:])
    limit = math.ceil((60 * minutes + seconds) / 60) + 2  # 1-2 minutes left
    done = _cmd("scontrol", "update", f"JobId={job_id}", f"TimeLimit={limit}")
    assert done.returncode == 0, done.stderr

    def signalled() -> bool:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except FileNotFoundError:
            return True  # the process is gone: it handled the signal and exited
        if not re.search(r"^State:\s*T", status, re.M):
            return True  # continued by slurmstepd
        masks = re.findall(r"^(?:ShdPnd|SigPnd):\s*([0-9a-f]+)$", status, re.M)
        return any(int(m, 16) & (1 << (signal.SIGUSR2 - 1)) for m in masks)
    until("SLURM's time-limit signal", signalled, 90, step=0.2)
    if proc.is_running():
        proc.resume()


def resumed_identically(folder: Path, reference: Path) -> None:
    """The job in ``folder`` completed after resuming mid-run, its result files byte-identical
    to the uninterrupted job's in ``reference``."""
    assert summary(folder)["status"] == "complete"
    assert summary(folder)["resumed_after_task"] in (1, 2)
    for name in RESULT_FILES:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory, mnist_root) -> Path:
    """A 2-job sweep (seeds 1 and 2) through SLURM, summarized; the seed-1 job's folder is the
    uninterrupted run the other tests compare with."""
    sweep_dir = tmp_path_factory.mktemp("slurm") / "reference"
    code, out = Sweep(sweep_dir, ["seed=1,2"], mnist_root, "launch").wait()
    assert code == 0, out
    folders = sorted(p.parent for p in sweep_dir.glob("*/summary.json"))
    assert [f.name.split(",", 1)[0] for f in folders] == ["seed=1", "seed=2"]  # swept: first
    assert all(summary(f)["status"] == "complete" for f in folders)
    ids = {p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir()
           if p.name[0].isdigit()}  # SLURM job ids (array jobs: ID_TASK)
    def accounted():  # really SLURM's jobs (sacct lags a few seconds)
        out = _cmd("sacct", "-n", "-X", "-j", ",".join(sorted(ids)), "-o", "JobName%40,State")
        return out.stdout.count(JOB_NAME) == 2
    until("SLURM's accounting of the jobs", accounted, 60, step=1)

    done = subprocess.run(
        ["timeout", "120", str(Path(sys.executable).parent / "cl-summarize"), str(sweep_dir),
         "plots=false"], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = (sweep_dir / "summary" / "runs.csv").read_text().splitlines()
    assert len(runs) == 3 and all(",complete," in row for row in runs[1:])
    rows = (sweep_dir / "summary" / "summary.csv").read_text().splitlines()
    assert any(row.startswith("rotated_mnist,naive,average_accuracy,") and ",2,1;2," in row
               for row in rows), rows
    return folders[0]


def test_sweep_of_two_slurm_jobs_and_summary(reference):
    assert (reference / "accuracy_matrix.csv").read_text().count("\n") == 4  # header + 3 tasks


def test_requeued_job_resumes_by_itself(reference, tmp_path, mnist_root):
    sweep = Sweep(tmp_path / "requeue", ["seed=1"], mnist_root, "launch")
    proc, job_id = frozen_after_task_1(sweep)
    assert _cmd("scontrol", "requeue", job_id).returncode == 0  # SIGCONT + SIGTERM
    release_requeued(job_id)
    code, out = sweep.wait()
    assert code == 0, out
    folder = job_folder(sweep.folder)
    resumed_identically(folder, reference)
    logs = job_logs(sweep.folder)
    assert "interrupted by SIGTERM" in logs
    assert f"SLURM requeued job {job_id}: it resumes by itself" in logs


def test_time_limit_with_requeue_resumes(reference, tmp_path, mnist_root):
    sweep = Sweep(tmp_path / "timeout_requeue", ["seed=1", "hydra.launcher.max_num_timeout=1"],
                  mnist_root, "launch")
    proc, job_id = frozen_after_task_1(sweep)
    reach_time_limit(proc, job_id)  # submitit requeues it (1 of max_num_timeout=1)
    release_requeued(job_id, "TimeLimit=10")  # a requeued job has its whole time again
    code, out = sweep.wait()
    assert code == 0, out
    folder = job_folder(sweep.folder)
    resumed_identically(folder, reference)
    logs = job_logs(sweep.folder)
    assert "Caught signal SIGUSR2" in logs and "timed-out" in logs and "Requeued job" in logs


def test_time_limit_without_requeue_is_interrupted_and_resumes(reference, tmp_path,
                                                               mnist_root):
    args = ["seed=1", "hydra.launcher.max_num_timeout=0"]
    sweep = Sweep(tmp_path / "timeout", args, mnist_root, "launch")
    proc, job_id = frozen_after_task_1(sweep)
    reach_time_limit(proc, job_id)
    code, out = sweep.wait()
    assert code == 1, out
    assert "Traceback" not in out, out
    assert "reached its time limit and was not requeued" in out, out
    assert "says interrupted (with the resume state" in out, out
    folder = job_folder(sweep.folder)
    assert summary(folder)["status"] == "interrupted"  # not failed: resumable
    assert summary(folder)["resume_state"] == "resume.pt"

    code, out = Sweep(sweep.folder, args, mnist_root, "relaunch").wait()
    assert code == 0, out
    resumed_identically(folder, reference)


def test_scancel_then_relaunch_completes(reference, tmp_path, mnist_root):
    sweep = Sweep(tmp_path / "scancel", ["seed=1"], mnist_root, "launch")
    proc, job_id = frozen_after_task_1(sweep)
    assert _cmd("scancel", job_id).returncode == 0  # SIGCONT + SIGTERM
    code, out = sweep.wait()
    assert code == 1, out
    assert "Traceback" not in out, out
    report = [line for line in out.splitlines() if line.startswith("sweep job #0")]
    assert len(report) == 1 and "ended without a result" in report[0], out
    assert "CANCELLED" in report[0] and "says interrupted" in report[0], out
    folder = job_folder(sweep.folder)
    assert summary(folder)["status"] == "interrupted"
    assert f"SLURM job {job_id} was not requeued (cancelled)" in job_logs(sweep.folder)

    code, out = Sweep(sweep.folder, ["seed=1"], mnist_root, "relaunch").wait()
    assert code == 0, out
    resumed_identically(folder, reference)
