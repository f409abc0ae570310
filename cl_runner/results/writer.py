"""Atomic writers for the files a run leaves in its folder.

Each file is written to a temporary name in the same folder and renamed over the target
(``os.replace`` is atomic on POSIX), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from cl_runner.errors import DiskFullError

#: the process umask, read once at import (os.umask can only be read by setting it)
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, fill: Callable[[IO], object], binary: bool = False) -> Path:
    """Create ``path`` atomically: ``fill(fh)`` writes into a temporary file in the same
    folder (text, UTF-8, or binary), which is synced and renamed over ``path``; returns the
    path. On any error the temporary file is removed and ``path`` is left as it was; a write
    that failed for lack of space raises :class:`~cl_runner.errors.DiskFullError` ("No space
    left on device", naming the file).
    The file gets the permissions an ordinary ``open`` would give (0666 minus the umask), not
    the owner-only 0600 of the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        full = _disk_full(exc, path.parent)  # measured before the temporary file is removed
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise DiskFullError(f"No space left on device: cannot write {path} "
                                f"({type(exc).__name__}: {exc}); free some space, then run the "
                                f"same command again") from exc
        raise
    return path


#: free bytes under which a failed write is taken for a full disk (a writer such as torch.save
#: reports it as a RuntimeError without the errno)
_FULL_BELOW = 1 << 20


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether the write that raised ``exc`` into ``folder`` failed for lack of space."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, Exception):
        return False
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda fh: fh.write(text))


def atomic_write_csv(path: str | Path, frame: pd.DataFrame, index: bool = False) -> Path:
    """Write a DataFrame as CSV atomically."""
    return atomic_write_text(path, frame.to_csv(index=index))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN/inf are not JSON; undefined metrics are written as null
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON atomically; NaN and infinities become ``null``."""
    return atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def accuracy_matrix_frame(accuracy: Sequence[Sequence[float]], num_tasks: int) -> pd.DataFrame:
    """The accuracy matrix as a labelled frame: index ``after_task_1..``, columns ``task_1..``.

    Args:
        accuracy: rows so far (``len(accuracy) <= num_tasks``), each of length ``num_tasks``.
    """
    frame = pd.DataFrame(
        [list(row) for row in accuracy],
        columns=[f"task_{j}" for j in range(1, num_tasks + 1)],
        index=pd.Index([f"after_task_{i}" for i in range(1, len(accuracy) + 1)], name="train_task"),
    )
    return frame


def metrics_frame(accuracy: Sequence[Sequence[float]], loss: Sequence[Sequence[float]]) -> pd.DataFrame:
    """Tidy frame, one row per (train_task, eval_task): columns ``train_task, eval_task,
    accuracy, loss, trained`` (``trained`` = eval_task <= train_task). Tasks are 1-based."""
    rows = [
        {"train_task": i, "eval_task": j, "accuracy": acc, "loss": lss, "trained": j <= i}
        for i, (acc_row, loss_row) in enumerate(zip(accuracy, loss, strict=True), start=1)
        for j, (acc, lss) in enumerate(zip(acc_row, loss_row, strict=True), start=1)
    ]
    return pd.DataFrame(rows, columns=["train_task", "eval_task", "accuracy", "loss", "trained"])


#: the columns of ``confusion.csv``
CONFUSION_COLUMNS = ("trained_task", "true_class", "predicted_class", "count")


def confusion_frame(confusion: Sequence[Sequence[Sequence[int]]]) -> pd.DataFrame:
    """Tidy confusion counts: one row per (trained_task, true_class, predicted_class) with a
    non-zero ``count`` (absent rows count 0), tasks 1-based, classes the output indices.

    Args:
        confusion: per task end, ``C x C`` counts ``[true][predicted]``.
    """
    counts = np.asarray(confusion, dtype=np.int64)  # (T', C, C)
    task, true, predicted = np.nonzero(counts)
    return pd.DataFrame({"trained_task": task + 1, "true_class": true,
                         "predicted_class": predicted, "count": counts[task, true, predicted]},
                        columns=list(CONFUSION_COLUMNS))
