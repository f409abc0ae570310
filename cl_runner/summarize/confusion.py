"""The final confusion matrix of class-incremental runs (``confusion.csv``), one figure per
group: the counts of the last task end summed over the group's seeds, each true class's row
normalized to the fraction of its test examples predicted as each class (docs/plots.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cl_runner.plotting import COLUMN_WIDTH, figure, save_figure, styled, wrap_label
from cl_runner.results.run_folder import CONFUSION
from cl_runner.results.writer import CONFUSION_COLUMNS
from cl_runner.summarize.aggregation import Group, Summary
from cl_runner.summarize.grouping import group_label, slug


def read_confusion(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """The counts of a ``confusion.csv`` as ``(T', C, C)`` int64 ``[task end][true][predicted]``
    (the file lists non-zero cells only). C: ``num_classes``, else the largest class id + 1.

    Raises:
        ValueError: a column is missing or a value is not a non-negative integer (names the file).
    """
    frame = pd.read_csv(path)
    missing = [c for c in CONFUSION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    values = frame[list(CONFUSION_COLUMNS)].to_numpy()
    if len(values) and (values.dtype.kind not in "iu" or values.min() < 0):
        raise ValueError(f"{path}: counts and ids must be non-negative integers")
    tasks = int(values[:, 0].max()) if len(values) else 0
    classes = num_classes or (int(values[:, 1:3].max()) + 1 if len(values) else 0)
    counts = np.zeros((tasks, classes, classes), dtype=np.int64)
    np.add.at(counts, (values[:, 0] - 1, values[:, 1], values[:, 2]), values[:, 3])
    return counts


def final_confusion(group: Group) -> np.ndarray | None:
    """The last task end's counts of the group's runs summed over seeds, ``(C, C)``; None
    when no run of the group has ``confusion.csv``."""
    finals = [read_confusion(r.path / CONFUSION)[-1] for r in group.runs
              if (r.path / CONFUSION).is_file()]
    if not finals or len({f.shape for f in finals}) != 1:
        return None
    return np.sum(finals, axis=0)


@styled
def confusion_figure(summary: Summary, group: Group, counts: np.ndarray,
                     width: float = COLUMN_WIDTH):
    """Row-normalized heatmap of ``counts`` (true class down, predicted class across),
    ``width`` inches wide (default: one column)."""
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    fig = figure(width, width + 0.4)
    ax = fig.subplots()
    image = ax.imshow(share, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    classes = counts.shape[0]
    if classes <= 20:
        ax.set_xticks(range(classes))
        ax.set_yticks(range(classes))
    runs = len([r for r in group.runs if (r.path / CONFUSION).is_file()])
    label = group_label(summary.group_keys, group.values)
    ax.set_title(wrap_label(f"{label} (n={runs}): after the last task", 40))
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


def plot_confusion(summary: Summary, folder: Path, width: float = COLUMN_WIDTH) -> list[Path]:
    """Per group whose runs wrote ``confusion.csv`` (class-incremental benchmarks): its final
    confusion matrix, ``confusion_<group>`` (PNG and PDF)."""
    written: list[Path] = []
    for g in summary.groups:
        counts = final_confusion(g)
        if counts is not None:
            written += save_figure(confusion_figure(summary, g, counts, width),
                                   folder / f"confusion_{slug(group_label(summary.group_keys, g.values))}")
    return written
