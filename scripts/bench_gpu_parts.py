#!/usr/bin/env python
"""The measurements of scripts/bench_gpu.sh (issue 31), one part per call, each appending JSON
lines to ``--results``; ``table`` prints them as one table (and writes it as Markdown).

- ``env``: Python, torch, CUDA and the device's name.
- ``smoke``: every registered strategy for 2 tasks on ``--device`` (pass/fail each, one process).
- ``floor``: a bare loop of the naive run's steps (MLP 784-256-256-10, SGD lr 0.01 momentum 0.8,
  batch 10, ``--tasks`` x ``--samples`` / 10 steps) on device-resident float tensors.
- ``run``: one ``run_experiment`` (Rotated MNIST, ``--tasks``, ``--samples`` per task) with
  ``--set`` overrides: wall, steps/s, average accuracy, peak GPU memory.
- ``table``: the results file as one table; ``--markdown`` writes it. "ratio to floor": wall
  time over the floor's of the same task count (data, rotations, evaluations, files included);
  "train ratio": the same without the evaluations and the data preparation. steps/s counts the
  continual phase's steps (MC-SGD's line phase does more, at batch 64 by default).

Every run part starts in a fresh process (bench_gpu.sh runs each under ``timeout``), so peak
memory and compilation are per run. Data: ``CL_RUNNER_DATA`` (bench_gpu.sh: gpu_bundle/data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

#: CPU results of the same runs (seed 1), for the accuracy column: naive docs/results/measured.md
#: (main job table, seed 1), MC-SGD README ``make run`` (1 thread, d98e364)
CPU_ACCURACY = {("naive", 20): 45.34, ("mcsgd", 20): 82.63}
#: per-strategy settings that keep the smoke part short (tests/conftest.py's FAST, trimmed)
SMOKE_SETTINGS = {"mcsgd": ["strategy.subset_size=50", "strategy.lmc_batch_size=10",
                            "strategy.line_samples=2"],
                  "ewc": ["strategy.fisher_samples=64"], "gdumb": ["strategy.epochs=2"],
                  "gem": ["strategy.memory_per_task=32"], "impresslearn": ["strategy.basis_size=1"]}


def emit(path: str, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` and echo it."""
    line = json.dumps(record)
    with open(path, "a") as f:
        f.write(line + "\n")
    print(line, flush=True)


def peak_gpu_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cl_runner.cli import CONF_DIR
    from cl_runner.dispatch import resolve

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return resolve(hydra_compose("config", overrides=overrides))


def base_overrides(args) -> list[str]:
    return [f"data.root={args.data_root}", "data.download=false", "progress=false",
            f"hardware={args.device}"]


def part_env(args) -> None:
    import torch

    cuda = torch.cuda.is_available()
    emit(args.results, {"part": "env", "python": platform.python_version(),
                        "torch": torch.__version__, "cuda": torch.version.cuda,
                        "device": torch.cuda.get_device_name(0) if cuda else platform.processor()
                        or "cpu", "cuda_available": cuda})


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def smoke_overrides(name: str, args) -> list[str]:
    """Overrides of strategy ``name``'s 2-task smoke run: Rotated MNIST, or Split MNIST for a
    strategy that refuses the domain-incremental scenario; a supermask model where needed."""
    from cl_runner.strategies import STRATEGIES

    config = STRATEGIES.get(name).config
    refused = getattr(config, "unsupported_scenarios", {})
    bench = "split_mnist" if "domain_incremental" in refused else "rotated_mnist"
    out = [f"strategy={name}", f"benchmark={bench}", "benchmark.num_tasks=2",
           f"benchmark.train_samples_per_task={args.samples}", *SMOKE_SETTINGS.get(name, [])]
    if getattr(config, "needs_supermask_model", False):
        out.append("model=masked_mlp")
    if bench == "split_mnist" and "class_incremental" in refused:
        out.append("benchmark.scenario=task")
    return out


def part_smoke(args) -> None:
    from cl_runner.errors import RunInterrupted
    from cl_runner.experiment import run_experiment
    from cl_runner.strategies import STRATEGIES

    signal.signal(signal.SIGALRM, _alarm)
    for name in STRATEGIES.names():
        start = time.perf_counter()
        record = {"part": "smoke", "name": name}
        signal.alarm(args.per_run_timeout)
        try:
            with tempfile.TemporaryDirectory() as out:
                summary = run_experiment(compose(base_overrides(args)
                                                 + smoke_overrides(name, args)), out)
            record.update(ok=True, average_accuracy=100 * summary["average_accuracy"])
        except _Timeout:
            record.update(ok=False, error=f"over {args.per_run_timeout} s")
        except RunInterrupted:  # the part's own timeout (SIGTERM): stop here
            record.update(ok=False, error="interrupted: the part's time limit")
            emit(args.results, record)
            raise
        except Exception as exc:  # noqa: BLE001 - a failing strategy must not stop the others
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300],
                          where=traceback.format_exc().strip().splitlines()[-3][:200])
        finally:
            signal.alarm(0)
        record["seconds"] = round(time.perf_counter() - start, 1)
        emit(args.results, record)


def part_floor(args) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_floor beside this script
    from bench_floor import sgd_floor

    from cl_runner.data.sources import load_mnist
    from cl_runner.models.mlp import MLP

    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    train_x, train_y, _, _ = load_mnist(args.data_root, download=False)
    x = train_x[: args.samples].float().div_(255).reshape(args.samples, -1).to(device)
    y = train_y[: args.samples].to(device)
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    model = MLP(784, [256, 256], 10).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    steps = sgd_floor(model, x, y, args.tasks, gen, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    emit(args.results, {"part": "run", "name": args.name or f"floor_{args.tasks}", "tasks":
                        args.tasks, "wall": wall, "train_wall": wall, "steps": steps,
                        "peak_gpu_mb": peak_gpu_mb(), "floor": True})


def part_run(args) -> None:
    from cl_runner.experiment import run_experiment

    overrides = [*base_overrides(args), f"strategy={args.strategy}", "benchmark=rotated_mnist",
                 f"benchmark.num_tasks={args.tasks}", *args.set]
    if args.samples:
        overrides.append(f"benchmark.train_samples_per_task={args.samples}")
    run = compose(overrides)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        summary = run_experiment(run, out)
    wall = time.perf_counter() - start
    train = wall - sum(summary["eval_seconds"]) - summary["data_seconds"]
    emit(args.results, {"part": "run", "name": args.name, "tasks": args.tasks, "wall": wall,
                        "train_wall": train, "steps": summary["steps"],
                        "peak_gpu_mb": peak_gpu_mb(),
                        "average_accuracy": 100 * summary["average_accuracy"],
                        "cpu_accuracy": CPU_ACCURACY.get((args.strategy, args.tasks))
                        if not args.samples else None})


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def part_table(args) -> None:
    records = [json.loads(line) for line in Path(args.results).read_text().splitlines()
               if line.strip()]
    env = next((r for r in records if r["part"] == "env"), {})
    lines = [f"# bench_gpu: {env.get('device', '?')}, torch {env.get('torch', '?')} (CUDA "
             f"{env.get('cuda')}), Python {env.get('python', '?')}, "
             f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC", ""]
    smoke = [r for r in records if r["part"] == "smoke"]
    if smoke:
        passed = [r["name"] for r in smoke if r["ok"]]
        lines += [f"Strategies, 2 tasks: {len(passed)}/{len(smoke)} pass", "",
                  "| strategy | result | s | accuracy % |", "|---|---|---|---|"]
        lines += [f"| {r['name']} | {'pass' if r['ok'] else 'FAIL: ' + r.get('error', '')} | "
                  f"{r['seconds']} | {_fmt(r.get('average_accuracy'))} |" for r in smoke]
        lines.append("")
    runs = [r for r in records if r["part"] == "run"]
    floors: dict[int, dict] = {}  # the latest floor of each task count, in run order
    if runs:
        lines += ["| run | tasks | wall s | train s | steps/s | ratio to floor | train ratio "
                  "| peak GPU MB | accuracy % | CPU accuracy % |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            if r.get("floor"):
                floors[r["tasks"]] = r
            floor = floors.get(r["tasks"])
            ratio = r["wall"] / floor["wall"] if floor and not r.get("floor") else None
            train = r["train_wall"] / floor["wall"] if floor and not r.get("floor") else None
            lines.append(f"| {r['name']} | {r['tasks']} | {r['wall']:.1f} | "
                         f"{r['train_wall']:.1f} | {r['steps'] / r['wall']:.0f} | "
                         f"{_fmt(ratio, '.3f')} | {_fmt(train, '.3f')} | "
                         f"{_fmt(r.get('peak_gpu_mb'), '.0f')} | "
                         f"{_fmt(r.get('average_accuracy'), '.2f')} | "
                         f"{_fmt(r.get('cpu_accuracy'), '.2f')} |")
        lines.append("")
    sweeps = [r for r in records if r["part"] == "sweep"]
    if sweeps:
        one = next((r for r in sweeps if r["n"] == 1 and r["ok"]), None)
        lines += ["| runs sharing the device | tasks each | wall s | runs/hour | vs n=1 | ok |",
                  "|---|---|---|---|---|---|"]
        for r in sweeps:
            rate = 3600 * r["n"] / r["wall"]
            base = 3600 / one["wall"] if one else None
            lines.append(f"| {r['n']} | {r['tasks']} | {r['wall']:.1f} | {rate:.0f} | "
                         f"{_fmt(rate / base if base else None, '.2f')} | {r['ok']} |")
        lines.append("")
    notes = [r for r in records if r["part"] == "note"]
    lines += [f"- {r['text']}" for r in notes]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["env", "smoke", "floor", "run", "table"])
    parser.add_argument("--results", required=True, help="JSON-lines file the parts append to")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--data-root", default=os.environ.get("CL_RUNNER_DATA", "data"))
    parser.add_argument("--strategy", default="naive")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--samples", type=int, default=None,
                        help="training examples per task (default: the benchmark's; floor: 60000)")
    parser.add_argument("--set", action="append", default=[], help="extra override (repeatable)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--per-run-timeout", type=int, default=40)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    if args.part == "floor" and args.samples is None:
        args.samples = 60000
    if args.part == "smoke" and args.samples is None:
        args.samples = 1000
    {"env": part_env, "smoke": part_smoke, "floor": part_floor, "run": part_run,
     "table": part_table}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
