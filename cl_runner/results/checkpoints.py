"""End-of-task checkpoints in a run folder, for the analyses of ``cl-analyze``.

Layout of ``<run folder>/checkpoints/``:

- ``init.pt``: the model's initialization (shared by every run of the same seed, benchmark and
  model, whatever the strategy);
- ``<kind>_<t>.pt`` for each saved task t and each kind of solution the strategy names
  (:meth:`cl_runner.strategies.base.Strategy.solutions`): ``w_hat`` (continual minimum),
  ``w_bar`` (MC-SGD), ``w_star`` (multitask);
- ``index.csv``: one row per file: ``name, kind, task, file, bytes`` (task 0 = ``init``).

Each ``.pt`` file is a ``state_dict`` (parameters and buffers, tensors on the CPU) written
with ``torch.save``. Every file, the index included, is written to a temporary name in the same
folder and renamed over the target, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import torch

from cl_runner.results.writer import atomic_write, atomic_write_csv

FOLDER = "checkpoints"
INDEX = "index.csv"
INIT = "init"
INDEX_COLUMNS = ["name", "kind", "task", "file", "bytes"]


def solution_name(kind: str, task: int) -> str:
    """``"w_hat_3"`` for kind ``w_hat`` and task 3; ``"init"`` for kind ``init``."""
    return INIT if kind == INIT else f"{kind}_{task}"


def cpu_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a ``state_dict`` (the model keeps training on its own tensors)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def atomic_torch_save(obj: object, path: Path) -> int:
    """``torch.save(obj)`` to ``path`` atomically (temporary file + rename); returns its size
    in bytes."""
    atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)
    return path.stat().st_size


class CheckpointWriter:
    """Writes the checkpoints of one run (see the module docstring).

    Args:
        run_dir: the run folder; files go to ``run_dir/checkpoints``.
        tasks: the tasks whose solutions are saved (None = every task).
    """

    def __init__(self, run_dir: str | Path, tasks: Iterable[int] | None = None) -> None:
        self.folder = Path(run_dir) / FOLDER
        self.tasks = None if tasks is None else set(tasks)
        self.rows: list[dict[str, object]] = []

    def save(self, kind: str, task: int, state: Mapping[str, torch.Tensor]) -> Path:
        """Save one solution (``kind`` ``init`` with task 0, or e.g. ``w_hat`` with task t) and
        rewrite the index. Returns the file's path."""
        name = solution_name(kind, task)
        path = self.folder / f"{name}.pt"
        size = atomic_torch_save(cpu_state(state), path)
        self.rows = [r for r in self.rows if r["name"] != name]
        self.rows.append({"name": name, "kind": kind, "task": task, "file": path.name,
                          "bytes": size})
        atomic_write_csv(self.folder / INDEX, pd.DataFrame(self.rows, columns=INDEX_COLUMNS))
        return path

    def save_task(self, task: int, solutions: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Save every solution of ``task`` (kind -> ``state_dict``) unless the task is not
        among those selected."""
        if self.tasks is not None and task not in self.tasks:
            return
        for kind, state in solutions.items():
            self.save(kind, task, state)


def read_index(run_dir: str | Path) -> pd.DataFrame:
    """The checkpoint index of a run folder (columns :data:`INDEX_COLUMNS`).

    Raises:
        FileNotFoundError: the run saved no checkpoints (``checkpoints.enabled=false``).
    """
    path = Path(run_dir) / FOLDER / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run saved no checkpoints (run it with "
                                f"checkpoints.enabled=true)")
    return pd.read_csv(path)


def load_state(run_dir: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` saved as ``name`` (e.g. ``"w_hat_3"``, ``"init"``) in a run folder,
    on the CPU.

    Raises:
        FileNotFoundError: no such checkpoint.
    """
    path = Path(run_dir) / FOLDER / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {name!r} in {path.parent}")
    return torch.load(path, map_location="cpu", weights_only=True)
