"""One run in its run folder: the rules that ``cl-run`` (:mod:`cl_runner.cli`) and the Python
API (:mod:`cl_runner.api`) share, so that both treat a folder the same way.

:func:`execute` takes a composed config and a folder, and

1. resolves the config (:func:`cl_runner.dispatch.resolve`: config errors come out here,
   before PyTorch is imported);
2. checks the folder (:func:`cl_runner.results.run_folder.check_run_folder`): a complete
   result of the same config is returned as it is (skipped) unless ``force=true``; a complete
   result of another config, or a run still going on in a live process, is refused with
   :class:`~cl_runner.results.run_folder.RunFolderError`, nothing in the folder changed;
3. runs :func:`cl_runner.experiment.run_experiment`, which first makes every other check
   (:func:`cl_runner.experiment.prepare`: the resume state of an unfinished run, the
   strategy's values...; a refusal there changes no file either) and only then starts the
   run: ``force=true`` removes a complete result's files, Hydra's record ``.hydra/`` is
   written, and an unfinished run of the same config resumes from its ``resume.pt``;
4. on an exception of a run that started, records the failure in ``summary.json``
   (:func:`cl_runner.sweep.record_failure`) and raises it again; an invalid value or a refusal
   (raised before the run started: nothing written) and an interruption (``summary.json`` says
   ``interrupted`` already: a signal, or a SLURM time limit that submitit did not requeue,
   :func:`cl_runner.slurm.scheduler_stop`) are raised as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cl_runner import sweep
from cl_runner.config import RunConfig
from cl_runner.dispatch import resolve
from cl_runner.errors import CLRunnerError, RunInterrupted
from cl_runner.results import run_folder
from cl_runner.slurm import scheduler_stop

log = logging.getLogger(__name__)

__all__ = ["JobResult", "execute", "failure_record", "save_hydra_record"]


@dataclass
class JobResult:
    """What :func:`execute` returns.

    Attributes:
        summary: the run's ``summary.json`` as a dict (``status: complete``).
        run: the resolved, typed config.
        config: the resolved config as plain data (the ``config`` of ``summary.json``).
        skipped: the folder already held a complete result of this config; nothing was run.
    """

    summary: dict[str, Any]
    run: RunConfig
    config: dict[str, Any]
    skipped: bool


def save_hydra_record(out_dir: str | Path, cfg: DictConfig, hydra_cfg: DictConfig | None) -> None:
    """Hydra's record of the job in ``out_dir/.hydra/`` (``config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``, as Hydra writes them), written once the run may use the folder:
    ``conf/config.yaml`` sets ``hydra.output_subdir: null``, so that Hydra does not replace
    the record of a result that the run is then refused to replace.

    Args:
        out_dir: the run folder.
        cfg: the composed job config (without the ``hydra`` node).
        hydra_cfg: a config whose ``hydra`` node is Hydra's own config of the job
            (``HydraConfig.instance().cfg`` in ``cl-run``); None writes nothing, and so does a
            ``hydra.output_subdir`` set on the command line (Hydra then writes it there).
    """
    from cl_runner.results.writer import atomic_write_text

    if hydra_cfg is None or hydra_cfg.hydra.output_subdir is not None:
        return
    folder = Path(out_dir) / run_folder.HYDRA_DIR
    for name, node in (("config.yaml", cfg), ("hydra.yaml", hydra_cfg),
                       ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        atomic_write_text(folder / name, OmegaConf.to_yaml(node))


def failure_record(out_dir: str | Path, exc: BaseException) -> Path | None:
    """Where the error ``exc`` of a failed job is recorded: ``out_dir/summary.json`` when it
    says ``failed`` with this error, else None (refused before the run started, so nothing
    was written; or the folder holds a complete result, never replaced by a failure)."""
    summary = run_folder.read_summary(out_dir)
    if (summary is None or summary.get("status") != "failed"
            or summary.get("error") != sweep.error_text(exc)):
        return None
    return Path(out_dir) / run_folder.SUMMARY


def _context(cfg: DictConfig) -> dict[str, Any]:
    """The fields a failure record names the run by (read from the unresolved config, which
    may be the invalid one)."""
    return {key: OmegaConf.select(cfg, path, default=None, throw_on_resolution_failure=False)
            for key, path in (("strategy", "strategy.name"), ("benchmark", "benchmark.name"),
                              ("seed", "seed"))}


def execute(cfg: DictConfig, out_dir: str | Path, hydra_cfg: DictConfig | None) -> JobResult:
    """Run the composed config ``cfg`` in ``out_dir`` by the rules of the module docstring.

    Args:
        cfg: the composed job config (``conf/config.yaml`` with overrides, no ``hydra`` node).
        out_dir: the run folder (created when the run starts).
        hydra_cfg: Hydra's config of the job, for the ``.hydra/`` record (see
            :func:`save_hydra_record`).

    Returns:
        A :class:`JobResult`; ``skipped`` when the folder already held this config's result.

    Raises:
        ConfigError: an invalid value (nothing written; most before PyTorch is imported);
            :class:`~cl_runner.results.run_folder.RunFolderError` (a ConfigError): the folder
            may not be used (another config's result or resume state, a live run), nothing in
            it changed.
        RunInterrupted: SIGINT / SIGTERM; the finished tasks are saved and resumable.
        submitit's UncompletedJobError: a SLURM time limit reached more often than
            ``hydra.launcher.max_num_timeout`` (not requeued); saved and resumable, as above.
        Exception: whatever the run raised (missing data, a diverged loss...), after
            ``summary.json`` records it (``status: failed``).
    """
    run = resolve(cfg)  # config errors answer here, before PyTorch is imported
    from cl_runner.experiment import config_dict, run_experiment  # imports torch
    from cl_runner.results.lock import folder_lock

    config = config_dict(run)
    with folder_lock(out_dir) as started:  # one process at a time from the check on
        try:
            done = run_folder.check_run_folder(out_dir, config, force=run.force)
            if done is not None:
                log.info("skipped: %s already holds a complete result for this config "
                         "(force=true re-runs it)", out_dir)
                return JobResult(done, run, config, skipped=True)

            def start() -> None:  # every check passed: the first writes into the folder
                started.append(True)
                if run.force and run_folder.replaced_by_force(out_dir):
                    removed = run_folder.clear_results(out_dir)
                    log.info("force=true: replacing the result in %s (%d files removed)",
                             out_dir, len(removed))
                save_hydra_record(out_dir, cfg, hydra_cfg)

            summary = run_experiment(run, out_dir, on_start=start)
            return JobResult(summary, run, config, skipped=False)
        except (RunInterrupted, run_folder.RunFolderError):
            raise  # interrupted: summary.json says so already; refused: nothing written
        except Exception as exc:
            if scheduler_stop(exc):
                raise  # a SLURM time limit, not requeued: summary.json says interrupted already
            if started:  # a failure of a run that started is recorded; a refusal is not
                try:
                    sweep.record_failure(out_dir, exc, _context(cfg))
                except CLRunnerError as also:  # e.g. the disk is full: report the first error
                    log.warning("the failure could not be recorded: %s", also)
            raise
