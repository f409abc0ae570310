"""The value ``cl-run`` returns to a sweeper (``objective.*``): the final average accuracy of
the run, or the mean over ``objective.seeds``; a diverged run may score
``objective.diverged_value`` instead of failing. Used by Hydra's Optuna sweeper
(``hydra/sweeper=optuna``, the presets in ``conf/hparams_search/``; docs/hparams_search.md).

With ``benchmark.validation_fraction > 0`` the average accuracy is measured on examples held
out of each task's training data (:mod:`cl_runner.data.validation`), never on the test sets.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cl_runner import job
from cl_runner.errors import TrainingDivergedError
from cl_runner.results import run_folder

log = logging.getLogger(__name__)

#: the file in a job folder that lists the per-seed values of a mean-over-seeds objective
OBJECTIVE_FILE = run_folder.OBJECTIVE


@dataclass
class ObjectiveResult:
    """What :func:`run_objective` returns.

    Attributes:
        value: the objective (a fraction): the average accuracy, or the mean over seeds.
        per_seed: seed -> that run's value (``diverged_value`` for a diverged run).
        diverged: the seeds whose run diverged.
        results: the :class:`~cl_runner.job.JobResult` of every run that finished.
    """

    value: float
    per_seed: dict[int, float] = field(default_factory=dict)
    diverged: list[int] = field(default_factory=list)
    results: list[job.JobResult] = field(default_factory=list)


def _settings(cfg: DictConfig) -> tuple[list[int] | None, float | None]:
    seeds = OmegaConf.select(cfg, "objective.seeds", default=None)
    diverged = OmegaConf.select(cfg, "objective.diverged_value", default=None)
    return (None if seeds is None or len(seeds) == 0 else [int(s) for s in seeds],
            None if diverged is None else float(diverged))


def multi_seed(cfg: DictConfig) -> bool:
    """True when ``objective.seeds`` asks for one run per seed."""
    return _settings(cfg)[0] is not None


def run_objective(cfg: DictConfig, out_dir: str | Path,
                  hydra_cfg: DictConfig | None) -> ObjectiveResult:
    """Run the job (or one per ``objective.seeds``, each in ``out_dir/seed<k>``) by the rules
    of :func:`cl_runner.job.execute` and return the objective.

    Raises:
        TrainingDivergedError: a run diverged and ``objective.diverged_value`` is null.
        Exception: whatever :func:`~cl_runner.job.execute` raises otherwise (a config error,
            missing data, an interruption...), for the first run that raises it.
    """
    seeds, diverged_value = _settings(cfg)
    targets: list[tuple[int, DictConfig, Path]] = []
    if seeds is None:
        targets.append((int(cfg.seed), cfg, Path(out_dir)))
    else:
        for seed in seeds:
            one = cfg.copy()
            one.seed = seed
            targets.append((seed, one, Path(out_dir) / f"seed{seed}"))
    out = ObjectiveResult(value=float("nan"))
    for seed, one, folder in targets:
        try:
            result = job.execute(one, folder, hydra_cfg)
        except TrainingDivergedError as exc:
            if diverged_value is None:
                raise
            log.warning("seed %d diverged (%s): scored %s (objective.diverged_value)", seed,
                        exc, diverged_value)
            out.per_seed[seed] = diverged_value
            out.diverged.append(seed)
            continue
        out.results.append(result)
        out.per_seed[seed] = float(result.summary["average_accuracy"])
    out.value = statistics.fmean(out.per_seed.values())
    if seeds is not None:
        from cl_runner.results.writer import atomic_write_json

        record: dict[str, Any] = {"objective": out.value, "metric": "average_accuracy",
                                  "per_seed": {str(k): v for k, v in out.per_seed.items()},
                                  "diverged_seeds": out.diverged,
                                  "evaluated_on": _evaluated_on(out)}
        atomic_write_json(Path(out_dir) / OBJECTIVE_FILE, record)
    return out


def _evaluated_on(out: ObjectiveResult) -> str | None:
    places = {r.summary.get("evaluated_on") for r in out.results}
    return places.pop() if len(places) == 1 else None


def trials_frame(sweep_dir: str | Path, params: list[str]) -> Any:
    """Every trial of a search in ``sweep_dir`` (one job folder each, any launch), best first:
    a pandas DataFrame with the columns ``params`` (each job's value, from its
    ``.hydra/overrides.yaml``), ``objective`` (a fraction: ``objective.json``'s mean over seeds,
    else the run's average accuracy; a failed run: its ``objective.diverged_value``, else
    NaN), ``evaluated_on`` (``validation`` in a search), ``status`` and ``folder``; rows of
    equal objective in the order the trials started."""
    import pandas as pd
    import yaml

    rows = []
    for overrides in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml")):
        folder = overrides.parent.parent
        values = dict(o.split("=", 1) for o in yaml.safe_load(overrides.read_text()) or []
                      if "=" in o)
        row: dict[str, Any] = {p: _number(values.get(p)) for p in params}
        summary = _read_json(folder / run_folder.SUMMARY)
        if (folder / OBJECTIVE_FILE).is_file():  # a mean over objective.seeds
            record = _read_json(folder / OBJECTIVE_FILE)
            row.update(objective=record.get("objective"), evaluated_on=record.get("evaluated_on"),
                       status="complete")
        else:
            config = summary.get("config") or {}
            status = summary.get("status", "missing")
            value = summary.get("average_accuracy") if status == "complete" else \
                (config.get("objective") or {}).get("diverged_value")
            row.update(objective=value, evaluated_on=summary.get("evaluated_on"),
                       status=status)
        row.update(started=summary.get("started_at", ""), folder=folder.name)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*params, "objective", "evaluated_on", "status",
                                        "started", "folder"])
    frame["objective"] = pd.to_numeric(frame["objective"], errors="coerce")
    frame = frame.sort_values("started", kind="stable")
    frame.insert(0, "trial", range(1, len(frame) + 1))  # in the order they started
    return frame.sort_values("objective", ascending=False, kind="stable",
                             na_position="last").drop(columns="started").reset_index(drop=True)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _number(text: str | None) -> Any:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def trials_table(frame: Any, title: str) -> Any:
    """A rich table of :func:`trials_frame`'s rows: parameters to 4 significant digits, the
    objective in percent to 2 decimals, what it was measured on."""
    from rich.table import Table

    params = [c for c in frame.columns
              if c not in ("trial", "objective", "evaluated_on", "status", "folder")]
    table = Table(title=title)
    table.add_column("trial", justify="right")
    for p in params:
        table.add_column(p, justify="right")
    places = sorted({str(v) for v in frame.evaluated_on if isinstance(v, str)})
    table.add_column(f"avg. accuracy (%) on {'/'.join(places) or 'n/a'}", justify="right")
    table.add_column("status")
    for row in frame.to_dict("records"):
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (row[p] for p in params)]
        score = row["objective"]
        table.add_row(str(row["trial"]), *cells,
                      f"{100 * score:.2f}" if score == score else "n/a", str(row["status"]))
    return table
