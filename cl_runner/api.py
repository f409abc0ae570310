"""The Python API: run an experiment from Python (a notebook, a script) as ``cl-run`` would.

    >>> from cl_runner import run
    >>> result = run(["strategy=mcsgd", "benchmark.num_tasks=3", "progress=false"])
    >>> result.accuracy_matrix          # pandas DataFrame, rows after_task_i, columns task_j
    >>> result.summary["average_accuracy"], result.run_dir

:func:`run` composes ``conf/config.yaml`` with the overrides through Hydra's compose API (the
same config tree, schemas and checks as ``cl-run``), then runs it in a run folder by the same
rules (:mod:`cl_runner.job`): an existing complete result of the same config is returned
without running (``skipped``), another config's result is refused, an unfinished run of the
same config resumes. :func:`load_run` reads a finished run folder into the same result object.
"""

from __future__ import annotations

import copy
import logging
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_runner.errors import OverrideError

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

__all__ = ["RunResult", "load_run", "run"]

#: ``hydra.job.name`` of API runs: their log file in the run folder is ``api.log``
JOB_NAME = "api"


@dataclass(frozen=True)
class RunResult:
    """A finished run, read from its run folder.

    Attributes:
        run_dir: the run folder (absolute).
        accuracy_matrix: ``accuracy_matrix.csv``: shape ``(T, T)``, index ``after_task_1`` ..
            ``after_task_T`` (named ``train_task``), columns ``task_1`` .. ``task_T``; entry
            (i, j) is the test accuracy on task j after training task i, a fraction in [0, 1].
        metrics: ``metrics.csv``, tidy: one row per (train_task, eval_task) with
            ``accuracy`` (fraction), ``loss`` (mean test cross-entropy, nats), ``trained``.
        summary: ``summary.json`` (``average_accuracy``, ``forgetting``, ..., ``config``).
        config: the resolved run config as plain data (``summary["config"]``).
        skipped: the folder already held this config's complete result, so nothing was run
            (always False for :func:`load_run`).
    """

    run_dir: Path
    accuracy_matrix: pd.DataFrame
    metrics: pd.DataFrame
    summary: dict[str, Any]
    config: dict[str, Any]
    skipped: bool = False

    @property
    def average_accuracy(self) -> float:
        """Mean accuracy over all tasks after the last one (a fraction)."""
        return self.summary["average_accuracy"]

    @property
    def forgetting(self) -> float | None:
        """Average forgetting (a fraction; None for a single task)."""
        return self.summary["forgetting"]


def load_run(run_dir: str | Path, skipped: bool = False) -> RunResult:
    """Read the complete run in ``run_dir`` (written by ``cl-run`` or :func:`run`).

    Raises:
        FileNotFoundError: no ``summary.json`` or result file in the folder.
        ValueError: the folder's run is not complete (its ``status`` and ``error`` are in the
            message), its result is damaged (``accuracy_matrix.csv`` not ``T x T``...), or
            ``summary.json`` is malformed.
    """
    import pandas as pd

    from cl_runner.results.run_folder import ACCURACY_MATRIX, METRICS, load_summary, result_problem

    run_dir = Path(run_dir).resolve()
    summary = load_summary(run_dir)
    if summary.get("status") != "complete":
        error = f" ({summary['error']})" if summary.get("error") else ""
        raise ValueError(f"{run_dir} holds no complete run: status "
                         f"{summary.get('status')!r}{error}")
    problem = result_problem(run_dir, summary)
    if problem is not None:
        raise ValueError(f"{run_dir} holds a damaged result: {problem}")
    return RunResult(run_dir=run_dir,
                     accuracy_matrix=pd.read_csv(run_dir / ACCURACY_MATRIX, index_col=0),
                     metrics=pd.read_csv(run_dir / METRICS), summary=summary,
                     config=summary.get("config", {}), skipped=skipped)


def _message(exc: BaseException) -> str:
    """``exc``'s message followed by those of its causes (Hydra puts the useful part, e.g.
    ``Key 'lmc_lrr' not in 'MCSGDConfig'``, in the cause), one per line, repeats dropped."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).strip()
        if text and text not in parts:
            parts.append(text)
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def override_list(overrides: str | Sequence[str]) -> list[str]:
    """The overrides as a list: a string is split as a shell splits a command line
    (``"strategy=mcsgd seed=2"`` -> ``["strategy=mcsgd", "seed=2"]``; quotes group), not into
    its characters."""
    if isinstance(overrides, str):
        return shlex.split(overrides)
    return [str(o) for o in overrides]


def compose_config(overrides: str | Sequence[str] = ()) -> DictConfig:
    """``conf/config.yaml`` composed with ``overrides`` as ``cl-run`` composes it (the same
    config tree and schemas), ``hydra`` node included. Hydra's global state is left as it
    was (this works inside a Hydra app and beside other compose calls).

    Raises:
        OverrideError: an override does not compose (the message is Hydra's, with its cause).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf.errors import OmegaConfBaseException

    from cl_runner.config import CONF_DIR, register_configs

    overrides = override_list(overrides)
    register_configs()
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name=JOB_NAME):
            return compose("config", overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise OverrideError(f"the overrides {list(overrides)} do not compose: "
                            f"{_message(exc)}") from exc
    finally:
        restore_gh_from_backup(backup)


def run(overrides: str | Sequence[str] = (), out_dir: str | Path | None = None) -> RunResult:
    """Run one experiment, configured as ``cl-run OVERRIDES...`` would be, and return its result.

    Args:
        overrides: Hydra overrides, as on the command line: ``["strategy=mcsgd", "seed=2",
            "benchmark.num_tasks=5", "+experiment=rotated_mnist_mcsgd"]``, or one string
            split as a shell would (``"strategy=mcsgd seed=2"``). Sweeps (``seed=1,2``) are
            not accepted: call :func:`run` once per value. A key no schema declares
            (``+foo=1``) is refused before anything is written.
        out_dir: the run folder. Default: a new folder as ``cl-run`` makes one
            (``hydra.run.dir``: ``outputs/runs/DATE/TIME-MICROSECONDS_BENCHMARK_STRATEGY_seedN``
            under the working directory); an override ``hydra.run.dir=...`` also sets it.

    Returns:
        :class:`RunResult`: the accuracy matrix and metrics as DataFrames, the summary dict,
        the run folder and the resolved config, read back from the folder's files.

    The folder is treated as ``cl-run`` treats it (:mod:`cl_runner.job`): if it already holds
    a complete result of the same resolved config, that result is returned without running
    (``skipped=True``; ``force=true`` runs again); a complete result of another config or a
    run going on in another live process is refused; an interrupted or crashed run of the same
    config resumes after its last finished task (``resume=false`` starts over). Ctrl-C stops
    at the next step, the finished tasks kept. The run writes ``.hydra/`` and ``api.log``
    (the ``cl_runner`` loggers' INFO records) into the folder; to see the per-task lines on
    screen, configure logging, e.g. ``logging.basicConfig(level=logging.INFO)``.

    Example:
        >>> import os; os.environ["CL_RUNNER_DATA"] = "../shared/data"
        >>> from cl_runner import run
        >>> r = run(["strategy=mcsgd", "benchmark=rotated_mnist", "benchmark.num_tasks=2",
        ...          "benchmark.train_samples_per_task=2000", "progress=false"],
        ...         out_dir="outputs/api_demo")
        >>> r.accuracy_matrix.round(3)
        >>> r.summary["average_accuracy"], r.forgetting, r.run_dir

    Raises:
        OverrideError (a ConfigError): an override does not compose: an unknown key or
            option, a wrong type, a sweep (nothing is written). ConfigError: a key added
            with ``+`` that no schema declares (nothing is written).
        ConfigError: a value out of range (refused before the run starts: nothing is
            written, as with ``cl-run``); RunFolderError (a ConfigError): the folder may not
            be used (nothing in it changed).
        DatasetNotFoundError, DatasetCorruptError, TrainingDivergedError: as ``cl-run``.
        RunInterrupted: SIGINT / SIGTERM (Ctrl-C); the finished tasks are saved, and calling
            :func:`run` again with the same ``out_dir`` resumes.
    """
    from omegaconf import OmegaConf, open_dict, read_write

    from cl_runner import job

    composed = compose_config(overrides)
    if out_dir is None:
        out_dir = OmegaConf.select(composed, "hydra.run.dir")
    out_dir = Path(os.path.abspath(out_dir))
    with read_write(composed), open_dict(composed):  # as Hydra's run_job records a job
        composed.hydra.run.dir = str(out_dir)
        composed.hydra.runtime.output_dir = str(out_dir)
    hydra_cfg = OmegaConf.masked_copy(composed, "hydra")
    cfg = copy.deepcopy(composed)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]

    package_log = logging.getLogger("cl_runner")
    handler = logging.FileHandler(out_dir / f"{JOB_NAME}.log", delay=True)  # opened on use
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    level = package_log.level
    package_log.addHandler(handler)
    if package_log.getEffectiveLevel() > logging.INFO:
        package_log.setLevel(logging.INFO)
    try:
        result = job.execute(cfg, out_dir, hydra_cfg)
    finally:
        package_log.removeHandler(handler)
        package_log.setLevel(level)
        handler.close()
    return load_run(out_dir, skipped=result.skipped)
