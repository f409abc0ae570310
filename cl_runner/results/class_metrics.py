"""Class-incremental metrics as pure functions of the confusion counts saved at every task end
(``confusion.csv``), where the accuracy matrix is not enough (docs/metrics.md, "Class-incremental
metrics"). Declared in :mod:`cl_runner.results.metrics` (``source="confusion"``).

Notation: ``confusions`` is ``(T, C, C)``: ``confusions[t, i, j]`` counts the test examples of
true class i predicted as class j after training task t+1, over the test sets of all T tasks;
``task_of_class`` is ``(C,)``: the 0-based task of each class (-1: a class no task uses).
"Seen after task t" = the classes of tasks 1..t.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Counts = Sequence[Sequence[Sequence[int]]] | np.ndarray


def _counts(confusions: Counts, task_of_class: Sequence[int] | np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confusions, dtype=np.float64)
    owner = np.asarray(task_of_class, dtype=np.int64)
    if conf.ndim != 3 or conf.shape[1] != conf.shape[2] or conf.shape[1] != owner.shape[0]:
        raise ValueError(f"confusions must be (T, C, C) with C = len(task_of_class) = "
                         f"{owner.shape[0]}, got shape {conf.shape}")
    return conf, owner


def accuracy_on(confusion: np.ndarray, classes: np.ndarray) -> float:
    """Accuracy on the test examples whose true class is in ``classes`` (bool ``(C,)``):
    their correct predictions over their number, a fraction; NaN when there are none."""
    rows = confusion[classes]
    total = rows.sum()
    return float(np.diag(confusion)[classes].sum() / total) if total > 0 else math.nan


def seen_accuracy_curve(confusions: Counts, task_of_class: Sequence[int]) -> list[float]:
    """Per task end t, the accuracy on the test examples of every class seen so far (tasks
    1..t), counted over examples (not a mean over tasks)."""
    conf, owner = _counts(confusions, task_of_class)
    return [accuracy_on(conf[t], (owner >= 0) & (owner <= t)) for t in range(conf.shape[0])]


def average_incremental_accuracy(confusions: Counts, task_of_class: Sequence[int]) -> float:
    """Average incremental accuracy: the mean over task ends t = 1..T of the accuracy on all
    classes seen so far (Rebuffi, Kolesnikov, Sperl & Lampert, "iCaRL: Incremental Classifier
    and Representation Learning", CVPR 2017, its experiments' summary number; the definition
    as recalled, not re-read here: docs/papers.md, "Class-incremental metrics"). A fraction.
    Not the final average accuracy (mixing the two is a known confusion: ../CLASS_IL.md)."""
    return float(np.mean(seen_accuracy_curve(confusions, task_of_class)))


def old_class_accuracy_curve(confusions: Counts, task_of_class: Sequence[int]) -> list[float]:
    """Per task end t, the accuracy on the classes of the earlier tasks 1..t-1 ("old"
    classes; NaN after task 1), over examples. Old against new classes is how Wu et al.
    ("Large Scale Incremental Learning" (BiC), CVPR 2019) and Hou et al. ("Learning a
    Unified Classifier Incrementally via Rebalancing" (LUCIR), CVPR 2019) show the bias
    towards the new classes (as recalled, not re-read here)."""
    conf, owner = _counts(confusions, task_of_class)
    return [accuracy_on(conf[t], (owner >= 0) & (owner < t)) for t in range(conf.shape[0])]


def new_class_accuracy_curve(confusions: Counts, task_of_class: Sequence[int]) -> list[float]:
    """Per task end t, the accuracy on the classes of task t itself ("new" classes), over
    examples (see :func:`old_class_accuracy_curve`)."""
    conf, owner = _counts(confusions, task_of_class)
    return [accuracy_on(conf[t], owner == t) for t in range(conf.shape[0])]


def task_recency_bias_curve(confusions: Counts, task_of_class: Sequence[int]) -> list[float]:
    """Per task end t, the task-recency bias: the share of the predictions on the test
    examples of the classes seen so far (tasks 1..t) that go to a class of task t, the
    latest task. A perfect classifier gives the latest task's share of the seen test
    examples (1/t with tasks of equal size); one that predicts only the latest task's
    classes, 1. The bias of a class-incremental learner towards the latest task's classes
    is discussed by Wu et al. (BiC, CVPR 2019: the last layer's bias towards new classes)
    and Hou et al. (LUCIR, CVPR 2019) (as recalled, not re-read here); this share is this
    project's one-number summary of it. NaN when no seen class has test examples."""
    conf, owner = _counts(confusions, task_of_class)
    out = []
    for t in range(conf.shape[0]):
        rows = conf[t][(owner >= 0) & (owner <= t)]
        total = rows.sum()
        out.append(float(rows[:, owner == t].sum() / total) if total > 0 else math.nan)
    return out


def final_old_class_accuracy(confusions: Counts, task_of_class: Sequence[int]) -> float:
    """:func:`old_class_accuracy_curve` after the last task."""
    return old_class_accuracy_curve(confusions, task_of_class)[-1]


def final_new_class_accuracy(confusions: Counts, task_of_class: Sequence[int]) -> float:
    """:func:`new_class_accuracy_curve` after the last task."""
    return new_class_accuracy_curve(confusions, task_of_class)[-1]


def final_task_recency_bias(confusions: Counts, task_of_class: Sequence[int]) -> float:
    """:func:`task_recency_bias_curve` after the last task."""
    return task_recency_bias_curve(confusions, task_of_class)[-1]


#: the per-task-end curves ``summary.json`` keeps beside the final values (``<name>_per_task``)
CURVES = {
    "seen_class_accuracy": seen_accuracy_curve,
    "old_class_accuracy": old_class_accuracy_curve,
    "new_class_accuracy": new_class_accuracy_curve,
    "task_recency_bias": task_recency_bias_curve,
}
