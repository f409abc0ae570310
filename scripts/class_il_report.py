"""The tables of ``docs/results/class_il.md`` from the runs of ``scripts/class_il_table.py``.

Per grid, one row per cell: the number of complete seeds, our final average accuracy (mean of
the last row of the accuracy matrix, in %) as mean ± std (n - 1), forgetting, the paper's number
where one is known, how sure it is (read / recalled / missing, as ../shared/CLASS_IL.md marks
them) and our gap to it; a gap over 2 points is flagged for the notes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

#: (grid, cell) -> (paper's class-IL final accuracy in %, status, source). [M] = recalled in
#: ../shared/CLASS_IL.md, not read in the paper: never a target, shown for orientation only.
PAPER: dict[tuple[str, str], tuple[float | None, str, str]] = {
    ("split_mnist_class", "naive"): (19.90, "recalled", "van de Ven & Tolias 2019, class-IL"),
    ("split_mnist_class", "ewc"): (20.01, "recalled", "van de Ven & Tolias 2019"),
    ("split_mnist_class", "ewc_online"): (19.96, "recalled", "van de Ven & Tolias 2019"),
    ("split_mnist_class", "si"): (19.99, "recalled", "van de Ven & Tolias 2019"),
    ("split_mnist_class", "lwf"): (23.85, "recalled", "van de Ven & Tolias 2019"),
    ("split_mnist_class", "icarl"): (94.57, "recalled", "van de Ven & Tolias 2019"),
    ("split_mnist_class", "multitask"): (97.94, "recalled", "van de Ven & Tolias 2019 (Joint)"),
    ("seq_mnist", "naive"): (19.60, "recalled", "DER paper Table 2 (SGD)"),
    ("seq_mnist", "ewc_online"): (20.46, "recalled", "DER paper Table 2 (oEWC)"),
    ("seq_mnist", "lwf"): (19.62, "recalled", "DER paper Table 2"),
    ("seq_mnist", "er_b200"): (80.43, "recalled", "DER paper Table 2"),
    ("seq_mnist", "er_b500"): (86.12, "recalled", "DER paper Table 2"),
    ("seq_mnist", "derpp_b200"): (85.61, "recalled", "DER paper Table 2"),
    ("seq_mnist", "derpp_b500"): (91.00, "recalled", "DER paper Table 2"),
    ("seq_mnist", "icarl_b500"): (70.10, "recalled", "DER paper Table 2"),
    ("seq_mnist", "multitask"): (95.57, "recalled", "DER paper Table 2 (JOINT)"),
    ("seq_mnist", "si"): (19.27, "recalled", "DER paper Table 2"),
    ("seq_mnist", "der_b200"): (84.55, "recalled", "DER paper Table 2"),
    ("seq_mnist", "der_b500"): (90.54, "recalled", "DER paper Table 2"),
    ("seq_mnist", "agem_b500"): (46.66, "recalled", "DER paper Table 2"),
}


def runs(folder: Path) -> list[dict]:
    """The complete runs below ``folder`` (one ``seedN`` folder each): their summaries."""
    out = []
    for path in sorted(folder.glob("seed*/summary.json")):
        summary = json.loads(path.read_text())
        if summary.get("status") == "complete":
            out.append(summary)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (n - 1; nan for one value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


def fmt(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    if math.isnan(std):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def grid_table(out: Path, grid: str, cells: list[tuple[str, str, list[str]]]) -> tuple[str, list[str]]:
    """A markdown table of one grid and the list of cells whose gap to the paper exceeds 2
    points."""
    lines = ["| method (preset) | seeds | avg acc (%) | task-IL avg acc (%) | forgetting | paper (%) "
             "| paper's number | gap (pp) | wall per run (s) |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    flagged = []
    for cell, preset, extra in cells:
        done = runs(out / grid / cell)
        paper, status, source = PAPER.get((grid, cell), (None, "missing", ""))
        paper_txt = "–" if paper is None else f"{paper:.2f}"
        status_txt = status if paper is None else f"{status}: {source}"
        name = f"{cell} (`{preset}`{' ' + ' '.join(extra) if extra else ''})"
        if not done:
            lines.append(f"| {name} | 0 | not run | | | {paper_txt} | {status_txt} | | |")
            continue
        acc = mean_std([s["average_accuracy"] for s in done])
        forg = mean_std([s["forgetting"] for s in done])
        wall = np.mean([s["wall_time_seconds"] for s in done])
        # the task-IL view of a class-IL run (its second accuracy matrix); "–" where the run
        # is itself task- or domain-incremental, or predates the second matrix
        task_il = [s["task_il_average_accuracy"] for s in done if "task_il_average_accuracy" in s]
        task_txt = fmt(*mean_std(task_il)) if len(task_il) == len(done) else "–"
        gap = "" if paper is None else f"{100 * acc[0] - paper:+.2f}"
        if paper is not None and abs(100 * acc[0] - paper) > 2:
            flagged.append(cell)
        lines.append(f"| {name} | {len(done)} | {fmt(*acc)} | {task_txt} | {fmt(*forg, scale=1, digits=3)} | "
                     f"{paper_txt} | {status_txt} | {gap} | {wall:.0f} |")
    return "\n".join(lines), flagged


def write_report(out: Path, grids: dict[str, list[tuple[str, str, list[str]]]],
                 notes: str = "") -> str:
    """The tables of every grid that has a complete run, as markdown sections."""
    parts = []
    for grid, cells in grids.items():
        if not (out / grid).exists():
            continue
        table, flagged = grid_table(out, grid, cells)
        parts.append(f"### {grid}\n\n{table}\n")
        if flagged:
            parts.append(f"Gaps over 2 points (see the notes): {', '.join(flagged)}.\n")
    return "\n".join(parts) + notes
