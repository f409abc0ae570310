#!/usr/bin/env python
"""Write ``docs/results/table1.md``: our mean ± std next to the MC-SGD paper's Table 1.

Usage: python scripts/table1.py SUMMARY_CSV OUT_MD [--wall-seconds S] [--command CMD] [--seeds S]
       [--note TEXT] [--append FILE]

SUMMARY_CSV is the tidy ``summary.csv`` that ``cl-summarize`` writes (one row per group and
metric: ``benchmark, strategy, metric, mean, std, n_seeds``). The paper's numbers are those of
``docs/papers.md`` (Table 1 of Mirzadeh et al., ICLR 2021; * = checked against a
re-implementation's config, the others still to be checked against the paper's text).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

#: (strategy, benchmark) -> (average accuracy %, forgetting, checked)
PAPER = {
    ("naive", "rotated_mnist"): (46.3, 0.52, True), ("naive", "permuted_mnist"): (44.4, 0.53, True),
    ("ewc", "rotated_mnist"): (48.5, 0.48, True), ("ewc", "permuted_mnist"): (70.7, 0.23, False),
    ("agem", "rotated_mnist"): (55.3, 0.42, False), ("agem", "permuted_mnist"): (65.7, 0.29, False),
    ("er", "rotated_mnist"): (69.2, 0.21, False), ("er", "permuted_mnist"): (72.4, 0.16, False),
    ("stable_sgd", "rotated_mnist"): (70.8, 0.10, False),
    ("stable_sgd", "permuted_mnist"): (80.1, 0.09, False),
    ("mcsgd", "rotated_mnist"): (82.3, 0.08, True), ("mcsgd", "permuted_mnist"): (85.3, 0.06, False),
    ("multitask", "rotated_mnist"): (89.5, 0.0, False),
    ("multitask", "permuted_mnist"): (91.3, 0.0, False),
}
ORDER = ["naive", "ewc", "agem", "er", "stable_sgd", "mcsgd", "multitask"]
BENCHMARKS = ["rotated_mnist", "permuted_mnist"]


def cell(frame: pd.DataFrame, strategy: str, benchmark: str, metric: str, scale: float,
         digits: int) -> str:
    """``mean ± std`` of one metric of one group, or ``-`` when the group has no complete run."""
    rows = frame[(frame.strategy == strategy) & (frame.benchmark == benchmark) & (frame.metric == metric)]
    if rows.empty:
        return "-"
    mean, std, n = rows.iloc[0][["mean", "std", "n_seeds"]]
    std_text = "n/a" if std is None or (isinstance(std, float) and math.isnan(std)) else f"{scale * std:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {std_text} (n={int(n)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summary_csv")
    parser.add_argument("out_md")
    parser.add_argument("--wall-seconds", type=float, default=None)
    parser.add_argument("--command", default="make reproduce")
    parser.add_argument("--seeds", default="1-3", help="the seeds, as shown in the header")
    parser.add_argument("--note", default="", help="a paragraph added under the header")
    parser.add_argument("--append", default=None,
                        help="a markdown file appended after the tables (hand-written analysis)")
    args = parser.parse_args()
    frame = pd.read_csv(args.summary_csv)
    lines = ["# Table 1 of the MC-SGD paper, reproduced", "",
             f"Made by `{args.command}`: 20 tasks, 60,000 training images per task, one epoch per "
             f"task, seeds {args.seeds}, presets `conf/experiment/<benchmark>_<method>.yaml`. "
             "Ours: mean ± sample std over seeds; accuracy in %, forgetting as a fraction. "
             "Paper: docs/papers.md (* = checked against a re-implementation's config).", ""]
    if args.note:
        lines += [args.note, ""]
    if args.wall_seconds is not None:
        lines += [f"Wall time of the whole reproduction on this machine: {args.wall_seconds / 60:.1f} min.", ""]
    for benchmark in BENCHMARKS:
        lines += [f"## {benchmark}", "",
                  "| method | average accuracy (ours) | paper | forgetting (ours) | paper |",
                  "|---|---|---|---|---|"]
        for strategy in ORDER:
            acc, fgt, checked = PAPER[(strategy, benchmark)]
            star = "*" if checked else ""
            lines.append(f"| {strategy} | {cell(frame, strategy, benchmark, 'average_accuracy', 100, 1)} "
                         f"| {acc}{star} | {cell(frame, strategy, benchmark, 'forgetting', 1, 3)} | {fgt} |")
        lines.append("")
    if args.append:
        lines += [Path(args.append).read_text(encoding="utf-8").rstrip(), ""]
    out = Path(args.out_md)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
