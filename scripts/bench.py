#!/usr/bin/env python
"""Speed benchmark (``make bench``): the runner against a bare PyTorch loop.

Each measurement runs in a fresh subprocess (so peak memory is per run), alternating
floor / naive / MC-SGD, repeated ``--repeats`` times; the report gives medians and the ratio
naive / floor measured in the same invocation (machines here are shared and noisy: compare
ratios, not seconds).

- floor: a bare PyTorch loop doing the same SGD steps as the naive run (MLP 784-256-256-10,
  batch 10, lr 0.01, momentum 0.8, one epoch over T x 60,000 examples) on preloaded float
  tensors: no rotation, no evaluation, no files.
- naive: ``cl-run strategy=naive benchmark=rotated_mnist`` end to end in-process (data loading,
  rotations, training, T+1 evaluations of all T test sets, run files).
- mcsgd: ``cl-run strategy=mcsgd benchmark=rotated_mnist`` (its default settings), end to end.
- naive_ce: the naive run with continual evaluation (``eval.every_steps=--eval-every``, default
  100; 1,000 test images per seen task per point): its slowdown over naive and the cost of
  one evaluation point are reported (``--only floor,naive,naive_ce``).

- naive_next, naive_none: the naive run with ``eval.future_tasks=next`` / ``none`` (what a
  smaller end-of-task evaluation saves).
- naive_compiled: the naive run with ``hardware.compile=default`` (torch.compile of the step's
  forward pass; the compilation, tens of seconds, is inside the wall time). Meant for a GPU;
  on the CPU it is not expected to be faster.
- ``--repo NAME=PATH`` (repeatable): also the naive run of another checkout (its own
  ``.venv/bin/python`` when it has one, else this one's; its own code, first on PYTHONPATH;
  e.g. a ``git archive`` of an old commit), labelled ``naive@NAME``, in the same invocation and the
  same alternation, e.g. ``--repo main=/work/main``: the one honest comparison of two versions
  on a shared machine.

- ``seq:NAME,...`` (the rest of ``--only``, e.g. ``--only seq:naive,er_b200,si,gem`` or
  ``--only floor,naive,seq:all``): one row per strategy on Seq-MNIST (``benchmark=split_mnist``,
  class-incremental, the ``seq_mnist_NAME`` presets, 5 tasks whatever ``--tasks``), time per
  training step against ``seq:naive``'s in the same repeat, with the time of a strategy's own
  phases and task-boundary work beside it (``scripts/bench_seq.py``); a row whose run fails
  says so and the others go on. Measured 2026-12-07 (``--samples 4000 --repeats 3 --only
  seq:all``, docs/results/seq_mnist_speed.md).
- ``--hidden H1,H2``: the floor's and the naive runs' MLP widths (default the benchmark's
  256,256). With a small net (16,16) the step's arithmetic shrinks and the runner's per-step
  overhead, which does not depend on the widths, stands out of the machine's noise.

Usage: python scripts/bench.py [--repeats 3] [--tasks 20] [--samples N] [--only floor,naive]
       [--threads 1] [--repo NAME=PATH ...] [--hidden H1,H2]

Every worker runs at --threads torch threads (default 1): at 2 threads on a shared 2-core
machine the bare loop itself swung from 16 s to 36 s between invocations (2026-12-03).

Two ratios are reported: wall / floor wall, and (wall - evaluation - data preparation) / floor
wall, i.e. the runner's cost for the same training steps (loop, hooks, resume states, files,
the training sets' rotations); and the per-step overhead in microseconds,
((wall - evaluation - data preparation) - floor wall) / steps, each run against the floor of
the same repeat, median over repeats: the figure that does not scale with the machine's speed
(issue 32); it is also given without the per-task construction of the training sets
(``task data``: Rotated MNIST rotates 60,000 images per task inside the task's time). The CPU time of the measured part of each worker (``time.process_time``) is
reported beside the wall time: at 1 thread on a machine shared with other jobs it moves far
less than the wall time (the process's share of a core does not count), so the CPU ratio is
the steadier comparison there.
The evaluations (T+1 passes over all T test sets, 20 x 21 x 10,000 images for 20 tasks) are
matrix products that scale with threads while batch-10 training steps barely do, so the first
ratio depends on --threads: 1.13 at 2 threads, about 1.35-1.6 at 1 thread (2026-12-03).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_seq beside this script
import bench_floor  # noqa: E402
import bench_seq  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker_floor(tasks: int, samples: int | None, data_root: str, threads: int = 0,
                 hidden: list[int] | None = None) -> dict:
    import torch

    from cl_runner.data.sources import load_mnist
    from cl_runner.models.mlp import MLP

    if threads:
        torch.set_num_threads(threads)

    train_x, train_y, _, _ = load_mnist(data_root, download=False)
    n = samples or len(train_y)
    x = train_x[:n].float().div_(255)  # preloaded float tensors
    y = train_y[:n]
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    model = MLP(784, hidden or [256, 256], 10)
    start, cpu = time.perf_counter(), time.process_time()
    steps = bench_floor.sgd_floor(model, x, y, tasks, gen)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "steps": steps,
            "task_seconds": [seconds / tasks] * tasks}


def timed(owner, name: str, sink: list[float]) -> None:
    """Replace ``owner.name`` by a wrapper adding each call's wall and CPU seconds to
    ``sink[0]`` and ``sink[1]``."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            sink[0] += time.perf_counter() - wall
            sink[1] += time.process_time() - cpu

    setattr(owner, name, wrapper)


def worker_run(strategy: str, tasks: int, samples: int | None, data_root: str, threads: int = 0,
               eval_every: int | None = None, future_tasks: str | None = None,
               compile_mode: str | None = None, hidden: list[int] | None = None) -> dict:
    from cl_runner.dispatch import resolve
    from cl_runner.experiment import run_experiment

    extra = ([f"eval.every_steps={eval_every}"] if eval_every else []) + (
        [f"eval.future_tasks={future_tasks}"] if future_tasks else []) + (
        [f"hardware.compile={compile_mode}"] if compile_mode else []) + (
        [f"model.hidden_sizes=[{','.join(map(str, hidden))}]"] if hidden else [])
    cfg = bench_seq.compose_config([f"strategy={strategy}", "benchmark=rotated_mnist",
                                    f"benchmark.num_tasks={tasks}"], data_root, samples,
                                   threads, extra)
    # wall and CPU time of the parts the floor does not do, the same way in every checkout's
    # code: the evaluations, building the benchmark, and each task's training set (Rotated
    # MNIST rotates 60,000 images per task inside the task's time, not in data_seconds)
    from cl_runner import dispatch
    from cl_runner.data import mnist
    from cl_runner.training import evaluate

    parts: dict[str, list[float]] = {"eval": [0.0, 0.0], "data": [0.0, 0.0], "task_data": [0.0, 0.0]}
    # the one function every evaluation pass goes through, in each version of the code
    timed(evaluate, "_forward_pass" if hasattr(evaluate, "_forward_pass") else "evaluate",
          parts["eval"])
    timed(dispatch, "build_benchmark", parts["data"])
    timed(mnist.TransformedMNIST, "train_data", parts["task_data"])
    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as out:
        summary = run_experiment(resolve(cfg), out)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "steps": summary["steps"], "task_seconds": summary["task_seconds"],
            "data_seconds": summary["data_seconds"], "eval_seconds": sum(summary["eval_seconds"]),
            "task_data_seconds": parts["task_data"][0],
            "parts_cpu_seconds": {k: v[1] for k, v in parts.items()},
            "average_accuracy": summary["average_accuracy"],
            "continual_eval_seconds": summary.get("continual_eval_seconds", 0.0),
            "continual_eval_points": summary.get("continual_eval_points", 0)}


def measure(kind: str, args) -> dict:
    """Run one measurement of ``kind`` in a fresh process: ``naive@NAME`` runs the naive worker
    with the interpreter and code of the checkout ``args.repos[NAME]``."""
    repo, worker = REPO, kind
    extra = []
    if kind.startswith("seq:"):
        worker, extra = "seq", ["--preset", kind.split(":", 1)[1]]
    elif "@" in kind:
        worker, name = kind.split("@", 1)
        repo = Path(args.repos[name])
    python = repo / ".venv" / "bin" / "python"
    cmd = [str(python) if python.exists() else sys.executable, str(Path(__file__).resolve()),
           "--worker", worker, "--tasks", str(args.tasks),
           "--data-root", args.data_root, "--threads", str(args.threads),
           "--eval-every", str(args.eval_every), *extra] + (
               ["--hidden", args.hidden] if args.hidden and worker != "seq" else []) + (
               ["--samples", str(args.samples)] if args.samples else [])
    env = {**os.environ, "PYTHONPATH": str(repo)}  # that checkout's code, whichever venv runs it
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, env=env)
    if proc.returncode != 0:
        if worker == "seq":  # one strategy's row: say why in the table, go on with the others
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            return {"failed": lines[-1][-200:] if lines else f"exit {proc.returncode}"}
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_step_overhead_us(run: dict, floor: dict) -> float:
    """As :func:`step_overhead_us` in CPU time, leaving out the CPU time of the evaluations,
    the benchmark's construction and the training sets' construction."""
    parts = sum(run.get("parts_cpu_seconds", {}).values())
    return 1e6 * (run["cpu_seconds"] - parts - floor["cpu_seconds"]) / run["steps"]


def step_overhead_us(run: dict, floor: dict, task_data: bool = False) -> float:
    """Microseconds per training step the run spends beyond the floor on the same steps:
    ``((wall - evaluation - data preparation) - floor wall) / steps``; with ``task_data``
    the training sets' construction per task (rotations) is left out too."""
    rest = run["seconds"] - run.get("eval_seconds", 0.0) - run.get("data_seconds", 0.0)
    if task_data:
        rest -= run.get("task_data_seconds", 0.0)
    return 1e6 * (rest - floor["seconds"]) / run["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--samples", type=int, default=None, help="training examples per task (default all)")
    parser.add_argument("--only", default="floor,naive,mcsgd",
                        help="runs, comma-separated; a seq: part ends the list: its items are "
                             "Seq-MNIST rows (seq:naive,er_b200,... or seq:all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in every worker, floor and runs alike (0 = PyTorch's default)")
    parser.add_argument("--data-root", default=os.environ.get("CL_RUNNER_DATA", str(REPO / "data")))
    parser.add_argument("--eval-every", type=int, default=100,
                        help="eval.every_steps of the naive_ce run (continual evaluation)")
    parser.add_argument("--repo", action="append", default=[], metavar="NAME=PATH",
                        help="also run naive from the checkout PATH (its .venv), as naive@NAME")
    parser.add_argument("--hidden", default=None, metavar="H1,H2",
                        help="hidden sizes of the floor's and the naive runs' MLP (default: the "
                             "benchmark's 256,256); a small net, e.g. 16,16, shrinks the step's "
                             "arithmetic so that the runner's per-step overhead stands out of the "
                             "machine's noise")
    parser.add_argument("--worker", choices=["floor", "naive", "mcsgd", "naive_ce", "naive_next",
                                             "naive_none", "naive_compiled", "seq"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)  # the seq worker's item
    args = parser.parse_args()

    hidden = [int(h) for h in args.hidden.split(",")] if args.hidden else None
    if args.worker:
        if args.worker == "seq":
            res = bench_seq.worker_seq(args.preset, args.samples, args.data_root, args.threads)
        elif args.worker == "floor":
            res = worker_floor(args.tasks, args.samples, args.data_root, args.threads, hidden)
        elif args.worker == "naive_ce":
            res = worker_run("naive", args.tasks, args.samples, args.data_root, args.threads,
                             eval_every=args.eval_every, hidden=hidden)
        elif args.worker == "naive_compiled":
            res = worker_run("naive", args.tasks, args.samples, args.data_root, args.threads,
                             compile_mode="default", hidden=hidden)
        elif args.worker in ("naive_next", "naive_none"):
            res = worker_run("naive", args.tasks, args.samples, args.data_root, args.threads,
                             future_tasks=args.worker.split("_")[1], hidden=hidden)
        else:
            res = worker_run(args.worker, args.tasks, args.samples, args.data_root, args.threads,
                             hidden=hidden)
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)  # a pipe: do not squeeze the table
    args.repos = dict(r.split("=", 1) for r in args.repo)
    plain, _, seq = args.only.partition("seq:")
    from cl_runner.cli import CONF_DIR
    kinds = ([k for k in plain.split(",") if k] + [f"naive@{name}" for name in args.repos]
             + ([f"seq:{i}" for i in bench_seq.seq_items(seq, CONF_DIR)] if seq else []))
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(args.repeats):
        for kind in kinds:
            with console.status(f"repeat {r + 1}/{args.repeats}: {kind}"):
                res = measure(kind, args)
            runs[kind].append(res)
            if "failed" in res:
                console.print(f"repeat {r + 1}: {kind:6s} failed: {res['failed']}")
                continue
            console.print(f"repeat {r + 1}: {kind:6s} {res['seconds']:7.1f} s  "
                          f"peak RSS {res['peak_rss_mb']:.0f} MB")

    table = Table(title=f"Rotated MNIST, {args.tasks} tasks, "
                        f"{args.samples or 60000} examples per task, median of {args.repeats}"
                        + (f", MLP 784-{args.hidden.replace(',', '-')}-10" if args.hidden else ""))
    for col in ("run", "wall (s)", "eval (s)", "data (s)", "task data (s)", "steps/s", "median s/task", "peak RSS (MB)",
                "ratio to floor", "ratio w/o eval+data", "us/step over floor", "CPU (s)",
                "CPU ratio"):
        table.add_column(col, justify="right")
    report = {"date": datetime.now().isoformat(timespec="seconds"), "args": vars(args), "runs": runs}
    floor = statistics.median(r["seconds"] for r in runs["floor"]) if "floor" in runs else None
    for kind, results in runs.items():
        if kind.startswith("seq:"):
            continue  # bench_seq.report_seq
        wall = statistics.median(r["seconds"] for r in results)
        steps = results[0]["steps"]
        per_task = statistics.median(statistics.median(r["task_seconds"]) for r in results)
        peak = max(r["peak_rss_mb"] for r in results)
        ratio = wall / floor if floor else float("nan")
        # what the floor does not do: T+1 evaluations of all T test sets, loading and rotating
        evaluation = statistics.median(r.get("eval_seconds", 0.0) for r in results)
        data = statistics.median(r.get("data_seconds", 0.0) for r in results)
        task_data = statistics.median(r.get("task_data_seconds", 0.0) for r in results)
        rest = statistics.median(r["seconds"] - r.get("eval_seconds", 0.0) - r.get("data_seconds", 0.0)
                                 for r in results)
        overhead = None
        if kind.startswith("naive") and floor:
            # per repeat, each run against the floor of the same repeat
            report.setdefault("over_floor_per_repeat", {})[kind] = [
                n["seconds"] / f["seconds"] for n, f in zip(results, runs["floor"], strict=True)]
            per_step = [step_overhead_us(n, f) for n, f in zip(results, runs["floor"], strict=True)]
            report.setdefault("step_overhead_us_per_repeat", {})[kind] = per_step
            overhead = statistics.median(per_step)
            report.setdefault("step_overhead_us_without_task_data", {})[kind] = statistics.median(
                step_overhead_us(n, f, task_data=True)
                for n, f in zip(results, runs["floor"], strict=True))
            report.setdefault("cpu_step_overhead_us_per_repeat", {})[kind] = [
                cpu_step_overhead_us(n, f) for n, f in zip(results, runs["floor"], strict=True)]
        cpu = statistics.median(r["cpu_seconds"] for r in results)
        cpu_floor = statistics.median(r["cpu_seconds"] for r in runs["floor"]) if floor else None
        report[kind] = {"wall_seconds": wall, "cpu_seconds": cpu,
                        "cpu_ratio_to_floor": cpu / cpu_floor if floor else None, "steps_per_second": steps / wall,
                        "median_task_seconds": per_task, "peak_rss_mb": peak, "ratio_to_floor": ratio,
                        "eval_seconds": evaluation, "data_seconds": data,
                        "ratio_to_floor_without_eval_and_data": rest / floor if floor else None,
                        "step_overhead_us": overhead}
        table.add_row(kind, f"{wall:.1f}", f"{evaluation:.1f}", f"{data:.1f}", f"{task_data:.1f}", f"{steps / wall:.0f}",
                      f"{per_task:.2f}", f"{peak:.0f}", f"{ratio:.3f}" if floor else "-",
                      f"{rest / floor:.3f}" if floor else "-",
                      f"{overhead:.1f}" if overhead is not None else "-", f"{cpu:.1f}",
                      f"{cpu / cpu_floor:.3f}" if floor else "-")
    if table.row_count:
        console.print(table)
    bench_seq.report_seq(console, runs, args, report)
    if "naive_ce" in runs and "naive" in runs:
        ce = runs["naive_ce"]
        per_point = statistics.median(1000 * r["continual_eval_seconds"] / r["continual_eval_points"]
                                      for r in ce if r["continual_eval_points"])
        slowdown = report["naive_ce"]["wall_seconds"] / report["naive"]["wall_seconds"]
        report["continual_eval"] = {"every_steps": args.eval_every, "ms_per_point": per_point,
                                    "points": ce[0]["continual_eval_points"],
                                    "slowdown_over_naive": slowdown}
        console.print(f"continual evaluation every {args.eval_every} steps: "
                      f"{ce[0]['continual_eval_points']} points, median {per_point:.1f} ms per point "
                      f"(all seen tasks, 1,000 images each), naive_ce / naive wall {slowdown:.3f}")
    for kind, ratios in report.get("over_floor_per_repeat", {}).items():
        console.print(f"{kind} / floor per repeat: " + ", ".join(f"{v:.3f}" for v in ratios)
                      + "; us/step over floor per repeat: "
                      + ", ".join(f"{v:.1f}" for v in report["step_overhead_us_per_repeat"][kind])
                      + f"; without the training sets' construction (task data): "
                      f"{report['step_overhead_us_without_task_data'][kind]:.1f}; in CPU time "
                      "without evaluation, data and task data, per repeat: "
                      + ", ".join(f"{v:.1f}" for v in report["cpu_step_overhead_us_per_repeat"][kind]))
    for name, path in {"(this checkout)": str(REPO), **args.repos}.items():
        console.print(f"naive@{name}: {path} at "
                      + subprocess.run(["git", "-C", path, "log", "-1", "--format=%h %s"],
                                       capture_output=True, text=True).stdout.strip()[:80])
    out = REPO / "outputs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_{datetime.now():%Y%m%d_%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    console.print(f"written: {path}")


if __name__ == "__main__":
    main()
