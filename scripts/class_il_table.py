#!/usr/bin/env python
"""Class-incremental results (issue 28): run the grid of presets and write
``docs/results/class_il.md``.

    python scripts/class_il_table.py run OUT [--grids split_mnist_class,seq_mnist] [--seeds 1,2,3] [--jobs 2]
    python scripts/class_il_table.py run OUT --plan seq_mnist:1,split_mnist_class:1,seq_mnist:2 [--after PID,...]
    python scripts/class_il_table.py table OUT [--md docs/results/class_il.md]

``run`` starts ``cl-run +experiment=PRESET seed=S`` for every cell of the chosen grids, at most
``--jobs`` at a time, each at one torch thread, each into its own folder
``OUT/GRID/CELL/seedS`` (a folder whose ``summary.json`` says complete is skipped; cl-run's own
run-folder checks refuse anything else it would overwrite; a folder that exists without a
complete result is skipped too: a run going on, or a failed one to look at). ``table`` reads the complete runs'
``summary.json`` and writes the tables between the page's ``BEGIN``/``END`` markers (the
notes around them are kept): final average accuracy
(mean over the tasks' accuracies after the last task, the papers' "average accuracy"), mean
± std over seeds (std with n - 1), beside the papers' numbers where ``../shared/CLASS_IL.md`` or
the paper read gives them (each marked read / recalled / missing).

Grids (each a list of (cell name, preset, extra overrides)):

- ``split_mnist_class``: van de Ven's Split MNIST protocol (``+experiment=split_mnist_*``),
  class-incremental;
- ``split_mnist_task`` / ``split_mnist_domain``: the same presets with
  ``benchmark.scenario=task|domain`` (EWC's lambda set to van de Ven's value for the scenario:
  1e5 task, 1e10 domain, params/param_values.py [R]; iCaRL only class-incremental, as his);
- ``seq_mnist``: the DER paper's Seq-MNIST protocol (``+experiment=seq_mnist_*``).

The stability gap (docs/results/stability_gap.md) comes from the ``er`` cell of
``split_mnist_class``, which runs with continual evaluation every 20 steps (it only reads the
model, with a generator of its own: the ER result is the same as without it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: cheapest first (on 2 shared cores a Split MNIST run takes 15-50 minutes: EWC's Fisher over
#: a whole task is the dearest), so that a grid cut short by the clock has the most methods;
#: ER early: its run also gives the stability gap
VDV = ["naive", "er", "multitask", "lwf", "agem", "icarl", "derpp", "si", "ewc", "ewc_online"]
#: van de Ven's EWC lambda per scenario on Split MNIST (params/param_values.py [R])
EWC_LAMBDA = {"task": "100000.0", "domain": "10000000000.0"}
#: and SI's c per scenario (the same file [R]; the preset holds the class scenario's 5000)
SI_C = {"task": "10.0", "domain": "50000.0"}


def split_mnist_grid(scenario: str) -> list[tuple[str, str, list[str]]]:
    """The Split MNIST cells of one scenario: (cell, preset, overrides)."""
    cells = []
    for name in VDV:
        extra = [] if scenario == "class" else [f"benchmark.scenario={scenario}"]
        # iCaRL runs in all three (issue 28 asks for it); van de Ven runs it in class-IL only
        if name.startswith("ewc") and scenario in EWC_LAMBDA:
            extra.append(f"strategy.ewc_lambda={EWC_LAMBDA[scenario]}")
        if name == "si" and scenario in SI_C:
            extra.append(f"strategy.c={SI_C[scenario]}")
        if name == "er" and scenario == "class":
            extra.append("eval.every_steps=20")  # the stability gap's continual evaluation
        cells.append((name, f"split_mnist_{name}", extra))
    return cells


#: the DER paper's Seq-MNIST protocol: every method of issues 28 and 29, buffers 200 and 500
SEQ_MNIST: list[tuple[str, str, list[str]]] = [
    *((n, f"seq_mnist_{n}", []) for n in (
        "naive", "er_b200", "er_b500", "derpp_b200", "derpp_b500", "lwf", "ewc_online",
        "icarl_b500", "multitask", "der_b200", "der_b500", "si", "er_ace_b200", "er_ace_b500",
        "agem_b200", "agem_b500", "icarl_b200", "wa_b200", "wa_b500", "bic_b200", "bic_b500")),
    ("gem_b200", "seq_mnist_gem", []), ("gem_b500", "seq_mnist_gem_500", []),
    ("gdumb_b500", "seq_mnist_gdumb", []),
    ("gdumb_b200", "seq_mnist_gdumb", ["strategy.memory_size=200"]),
    # Mammoth's A-GEM as read: its first batch of each task (10 examples) is the memory
    ("agem_mammoth", "seq_mnist_agem_b200", ["strategy.memory_per_class=5"]),
]


GRIDS: dict[str, list[tuple[str, str, list[str]]]] = {
    "split_mnist_class": split_mnist_grid("class"),
    "seq_mnist": SEQ_MNIST,
    "split_mnist_task": split_mnist_grid("task"),
    "split_mnist_domain": split_mnist_grid("domain"),
    # the Seq-MNIST presets from PyTorch's initialization instead of Mammoth's Xavier start:
    # what the presets did before model.init existed (runs of 2026-12-07, commit c25d7bb)
    # (iCaRL's cells also ran with the loss over the seen classes' units, before strategy.units)
    "seq_mnist_torch_init": [(c, p, [*x, "model.init=torch"]
                              + (["strategy.units=seen"] if c.startswith("icarl") else []))
                             for c, p, x in SEQ_MNIST],
    # iCaRL's loss over the seen classes' units (the paper's Alg. 3) instead of every output
    # (Mammoth's get_loss, the presets' strategy.units=all): the presets before the key existed
    "seq_mnist_icarl_units": [(c, f"seq_mnist_{c}", ["strategy.units=seen"])
                              for c in ("icarl_b200", "icarl_b500")],
    # van de Ven & Tolias 2019 (arXiv 1904.07734) ran iCaRL with a total budget of 2,000
    # exemplars (their code of 2019-05, main.py --budget default 2000, README
    # `./main.py --icarl --budget=2000` [R]); the preset follows the 2022 code's 100 per class
    # (run before strategy.distill_temperature existed: the plain sigmoid, T = 1)
    "split_mnist_probe": [("icarl_budget2000", "split_mnist_icarl",
                           ["strategy.memory_size=2000", "strategy.distill_temperature=1.0"])],
    # SI in task-IL and domain-IL with the class scenario's c (5000, the preset's), as the grid
    # ran it before SI_C existed
    "split_mnist_si_c5000": [(f"si_{sc}", "split_mnist_si", [f"benchmark.scenario={sc}"])
                             for sc in ("task", "domain")],
    # iCaRL's old-class targets as a plain sigmoid (T = 1: the paper's, Mammoth's) instead of
    # van de Ven's sigmoid(z / 2) (the preset's strategy.distill_temperature=2.0): the preset
    # before the key existed, in the three scenarios
    "split_mnist_icarl_t1": [(f"icarl_{sc}", "split_mnist_icarl",
                              ([] if sc == "class" else [f"benchmark.scenario={sc}"])
                              + ["strategy.distill_temperature=1.0"])
                             for sc in ("class", "task", "domain")],
    # Mammoth's current icarl.py adds opt_wd * sum(p^2) to the loss (opt_wd default 1e-5,
    # read at e75a491): with plain SGD the same step as torch's weight_decay 2e-5
    "seq_mnist_icarl_wd": [(c, f"seq_mnist_{c}", ["optimizer.weight_decay=2e-05"])
                           for c in ("icarl_b200", "icarl_b500")],
    # LwF's class-IL distillation over the previous tasks' classes (Mammoth's) instead of every
    # output (van de Ven's code, the preset's strategy.distill_classes=all): the preset before
    # the key existed
    "split_mnist_lwf_previous": [("lwf", "split_mnist_lwf", ["strategy.distill_classes=previous"])],
}


#: the generated block of the results page (the text around it is written by hand)
BEGIN, END = "<!-- tables: scripts/class_il_table.py table -->", "<!-- /tables -->"


def complete(folder: Path) -> bool:
    """Whether ``folder`` holds a complete run (its ``summary.json`` says so)."""
    try:
        return json.loads((folder / "summary.json").read_text())["status"] == "complete"
    except (OSError, ValueError, KeyError):
        return False


def run_one(folder: Path, preset: str, seed: int, extra: list[str]) -> str:
    """One ``cl-run`` into ``folder`` (its log beside it as ``folder.log``); a line saying how
    it ended."""
    if complete(folder):
        return f"skip {folder}"
    if folder.exists():  # started before: running now, or failed (look at it, rerun by hand)
        return f"skip (started, not complete) {folder}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(REPO / ".venv/bin/cl-run"), f"+experiment={preset}", f"seed={seed}",
           "progress=false", "hardware=cpu", "hardware.num_threads=1",
           f"hydra.run.dir={folder}", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = time.time()
    with open(f"{folder}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return f"rc={rc} {time.time() - started:.0f}s {folder}"


def wait_for(pid: int) -> str:
    """Hold a slot until process ``pid`` (a run started earlier) has ended."""
    while Path(f"/proc/{pid}").exists():
        time.sleep(10)
    return f"process {pid} ended"


def run(out: Path, plan: list[tuple[str, int]], jobs: int, after: list[int]) -> None:
    """Every cell of each (grid, seed) of ``plan``, in that order; the runs ``after`` (pids
    started earlier) hold slots until they end, so that no more than ``jobs`` runs go on at
    once."""
    todo = [(out / grid / cell / f"seed{seed}", preset, seed, extra)
            for grid, seed in plan for cell, preset, extra in GRIDS[grid]]
    with ThreadPoolExecutor(jobs) as pool:
        lines = [pool.submit(wait_for, pid) for pid in after]
        lines += [pool.submit(run_one, *job) for job in todo]
        for future in lines:
            line = future.result()
            print(time.strftime("%H:%M:%S"), line, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("out", type=Path)
    p_run.add_argument("--grids", default="split_mnist_class,seq_mnist")
    p_run.add_argument("--seeds", default="1,2,3")
    p_run.add_argument("--plan", default="", help="GRID:SEED,... in order (replaces --grids/--seeds; "
                       "default: seed 1 of every grid, then seed 2, ...)")
    p_run.add_argument("--jobs", type=int, default=2)
    p_run.add_argument("--after", default="", help="pids of runs to wait for (comma-separated)")
    p_table = sub.add_parser("table")
    p_table.add_argument("out", type=Path)
    p_table.add_argument("--md", type=Path, default=REPO / "docs/results/class_il.md")
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.plan:
            plan = [(g, int(s)) for g, s in (item.split(":") for item in args.plan.split(","))]
        else:
            plan = [(g, int(s)) for s in args.seeds.split(",") for g in args.grids.split(",")]
        unknown = sorted({g for g, _ in plan} - set(GRIDS))
        if unknown:
            parser.error(f"unknown grids {unknown}; known: {sorted(GRIDS)}")
        run(args.out, plan, args.jobs, [int(p) for p in args.after.split(",") if p])
        return 0
    from class_il_report import write_report  # the tables (scripts/class_il_report.py)

    tables = f"{BEGIN}\n{write_report(args.out, GRIDS)}\n{END}"
    old = args.md.read_text() if args.md.exists() else f"# Class-incremental results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in old or END not in old:
        parser.error(f"{args.md} has no {BEGIN} ... {END} block for the tables")
    head, rest = old.split(BEGIN, 1)
    args.md.write_text(head + tables + rest.split(END, 1)[1])
    print(f"wrote {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
