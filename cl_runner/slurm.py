"""SLURM seen from inside a run: what stopped it and what happens next (no torch, no submitit
import; :mod:`cl_runner.submitit_launchers` is the sweep's side).

A sweep job started by Hydra's submitit launcher (``hydra/launcher=submitit_slurm``) can be
stopped by the scheduler in three ways, each leaving ``status: interrupted`` and the resume
state of the finished tasks in the job's folder:

- ``SIGTERM`` (``scancel``, ``scontrol requeue``, a preemption with ``PreemptMode=REQUEUE``):
  caught by the run (:class:`~cl_runner.resume.InterruptHook`), which stops at the next step.
  When SLURM requeued the job, the job starts again by itself and resumes; when not
  (``scancel``), the sweep command run again resumes it. :func:`resume_advice` says which.
- submitit's time-limit / preemption signal (``USR2``, ``hydra.launcher.signal_delay_s``
  before the limit): submitit requeues the job and exits (``SystemExit``), up to
  ``hydra.launcher.max_num_timeout`` times for a time limit;
- past that count submitit raises its ``UncompletedJobError`` inside the run
  (:func:`scheduler_stop`): the job ends, not requeued, and is counted as interrupted (it is
  resumable), not failed. So is a job whose requeue call (``scontrol requeue``, run by
  submitit from inside the job) was killed by the requeue's own ``SIGTERM``: when SLURM did
  requeue it (:func:`requeued`), the job exits without a result and the sweep waits for it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

__all__ = ["requeued", "resume_advice", "scheduler_stop", "slurm_job_id"]


def scheduler_stop(exc: BaseException) -> bool:
    """True when ``exc`` comes from submitit's time-limit / preemption handler inside a job: the
    job is stopped by the scheduler, not failed.

    - submitit's ``UncompletedJobError``: the time limit was reached more often than
      ``max_num_timeout`` (or the job cannot be checkpointed), so it is not requeued;
    - a failed ``scontrol requeue`` (``CalledProcessError`` / ``TimeoutExpired``): submitit's
      own requeue call, usually killed by the ``SIGTERM`` that the requeue sends to every
      process of the job, ``scontrol`` included; whether the job was requeued is then told by
      :func:`requeued`.

    Without submitit imported the exception cannot be submitit's (False).
    """
    utils = sys.modules.get("submitit.core.utils")
    if utils is None:
        return False
    if isinstance(exc, utils.UncompletedJobError):
        return True
    cmd = getattr(exc, "cmd", None)
    return (isinstance(exc, subprocess.CalledProcessError | subprocess.TimeoutExpired)
            and isinstance(cmd, list | tuple) and list(cmd[:2]) == ["scontrol", "requeue"])


def slurm_job_id() -> str | None:
    """This process's SLURM job id (``SLURM_JOB_ID``), None outside a SLURM job."""
    return os.environ.get("SLURM_JOB_ID") or None


def requeued(job_id: str, timeout: float = 10.0) -> bool | None:
    """Whether SLURM is requeueing job ``job_id`` (asked of ``scontrol show job``).

    ``scontrol requeue`` (by hand, by submitit, or a preemption) raises the job's ``Restarts``
    count before it sends ``SIGTERM``; the running job knows its own count from
    ``SLURM_RESTART_COUNT`` (absent: 0). A higher count means the job will start again.

    Returns:
        True (requeued: it starts again by itself), False (not requeued: cancelled or ended),
        None when ``scontrol`` cannot answer within ``timeout`` seconds.
    """
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                             text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\bRestarts=(\d+)", out.stdout)
    if out.returncode != 0 or found is None:
        return None
    return int(found.group(1)) > int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def resume_advice(again: str) -> str:
    """What resumes an interrupted run: ``run AGAIN to resume`` outside SLURM (``again`` is the
    command, e.g. "the same sweep command again (same hydra.sweep.dir)"); inside a SLURM job,
    that the requeued job resumes by itself, or that it was not requeued (see
    :func:`requeued`)."""
    job_id = slurm_job_id()
    if job_id is None:
        return f"run {again} to resume"
    state = requeued(job_id)
    if state is True:
        return f"SLURM requeued job {job_id}: it resumes by itself when it starts again"
    if state is False:
        return f"SLURM job {job_id} was not requeued (cancelled); run {again} to resume"
    return (f"if SLURM requeues job {job_id} it resumes by itself; otherwise run {again} "
            f"to resume")
