"""Hydra's submitit launchers (``hydra/launcher=submitit_slurm|submitit_local``) with a one-line
report for a job that ended without a result: the logic (:class:`OneLineReports`), mixed into
the plugin's launcher classes in ``hydra_plugins/cl_runner_launchers`` (Hydra instantiates
launchers only from the ``hydra_plugins`` package).

Hydra's plugin collects every job's result with ``job.results()``; a job that left no result
(``scancel``, a node failure, an out-of-memory kill, a process killed by hand) makes submitit
raise ``UncompletedJobError`` there, and ``cl-run -m`` ends with a submitit traceback that
holds the job's whole error log. These launchers are the plugin's, with the results collected
one job at a time: such a job becomes a failed job whose error (:class:`SweepJobStopped`, a
Hydra "compact" exception) is printed as one line by Hydra when the sweep ends, after the
other jobs finished, naming the job, SLURM's state, what its folder says (``interrupted``,
with the finished tasks' resume state) and that the same sweep command resumes it. A job
stopped at its SLURM time limit and not requeued (submitit's ``max_num_timeout``) is reported
the same way (:func:`cl_runner.slurm.scheduler_stop`).

:func:`register_launchers` points ``hydra/launcher=submitit_slurm|submitit_local`` at these
classes; the configs are the plugin's own schemas and defaults, so every launcher key
(``partition``, ``timeout_min``, ``max_num_timeout``...) is the plugin's. Light to import (Hydra
imports every plugin module at start-up): the plugin and submitit are imported when used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf

from cl_runner.slurm import scheduler_stop

log = logging.getLogger(__name__)

#: the launcher classes (``hydra_plugins/cl_runner_launchers``) by launcher config name
TARGETS = {"submitit_slurm": "hydra_plugins.cl_runner_launchers.SlurmLauncher",
           "submitit_local": "hydra_plugins.cl_runner_launchers.LocalLauncher"}

__all__ = ["TARGETS", "OneLineReports", "SweepJobStopped", "register_launchers"]


class SweepJobStopped(CompactHydraException):
    """A sweep job ended without its result (cancelled, killed, timed out and not requeued);
    the message is one line (Hydra prints a compact exception without a traceback)."""


def register_launchers() -> None:
    """Store the launcher configs ``hydra/launcher/submitit_slurm`` and ``submitit_local`` in
    Hydra's ConfigStore as the plugin's own schemas and defaults with ``_target_`` set to this
    project's launchers (:data:`TARGETS`), replacing the plugin's entries of the same names.

    Called from the search-path plugin in ``hydra_plugins/cl_runner_launchers``, which Hydra runs
    after it imported every plugin module (the plugin's module, which stores its own entries,
    may be imported again then) and before it composes a config. Nothing without the ``slurm``
    extra (hydra-submitit-launcher).
    """
    try:
        from hydra_plugins.hydra_submitit_launcher import config as plugin_config
    except ImportError:  # pip install -e '.[slurm]'
        return
    cs = ConfigStore.instance()
    for name, schema in (("submitit_slurm", plugin_config.SlurmQueueConf),
                         ("submitit_local", plugin_config.LocalQueueConf)):
        cs.store(group="hydra/launcher", name=name, node=schema(_target_=TARGETS[name]),
                 provider="cl_runner")


def _folder_state(folder: str | None) -> str:
    """What a job folder says, for the report: its status and whether it can resume."""
    from cl_runner.results.run_folder import RESUME_FILE, read_summary

    if folder is None:
        return "its folder is unknown"
    summary = read_summary(folder)
    status = summary.get("status") if isinstance(summary, dict) else None
    if status is None:
        return f"{folder} holds no run record"
    resume = ("with the resume state of its finished tasks" if (Path(folder) / RESUME_FILE).is_file()
              else "no task finished")
    return f"{folder} says {status} ({resume})" if status != "complete" else f"{folder} is complete"


def _stopped(overrides: Sequence[str], idx: int, what: str, folder: str | None) -> JobReturn:
    """A failed JobReturn whose error is the one-line report of a stopped job."""
    ret = JobReturn(overrides=list(overrides), working_dir=folder, status=JobStatus.FAILED)
    again = "run the same sweep command again (same hydra.sweep.dir) to resume it"
    ret.return_value = SweepJobStopped(
        f"sweep job #{idx} ({' '.join(filter_overrides(overrides))}) {what}; "
        f"{_folder_state(folder)}; {again}")
    return ret


class OneLineReports:
    """The plugin's ``launch`` with the results collected one job at a time (see the module
    docstring); mixed into the plugin's launcher classes (first in the bases)."""

    def _job_folder(self, overrides: Sequence[str]) -> str | None:
        """The job's run folder (``hydra.sweep.dir``/``hydra.sweep.subdir`` of its config)."""
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            return os.path.join(str(OmegaConf.select(cfg, "hydra.sweep.dir")),
                                str(OmegaConf.select(cfg, "hydra.sweep.subdir")))
        except Exception:  # noqa: BLE001 (only for the report)
            return None

    def _collect(self, job: Any, overrides: Sequence[str], idx: int) -> JobReturn:
        """``job``'s JobReturn, or a failed one with a one-line report."""
        from submitit.core.utils import UncompletedJobError

        try:
            ret = job.results()[0]
        except UncompletedJobError:  # no result: cancelled, killed, node failure
            return _stopped(overrides, idx, f"ended without a result (submitit job {job.job_id}, "
                            f"state {job.state}; log {job.paths.stderr})",
                            self._job_folder(overrides))
        if ret.status == JobStatus.FAILED and scheduler_stop(ret._return_value):
            return _stopped(overrides, idx, f"reached its time limit and was not requeued "
                            f"(hydra.launcher.max_num_timeout={self.params.get('max_num_timeout')})",
                            self._job_folder(overrides))  # (working_dir: the cwd)
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        """The plugin's ``launch`` (hydra-submitit-launcher 1.2), collecting with
        :meth:`_collect`."""
        import submitit
        from hydra.core.singleton import Singleton
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"max_num_timeout"}
        init_params = {"folder": self.params["submitit_folder"],
                       **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items()
                          if k in init_keys}}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items()
                                      if k not in init_keys | {"submitit_folder"}})
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                               Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        return [self._collect(job, overrides, idx) for job, (overrides, _, idx, _, _)
                in zip(jobs, job_params, strict=True)]

