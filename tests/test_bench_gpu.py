"""scripts/bench_gpu_parts.py (issue 31), the parts of scripts/bench_gpu.sh that need no GPU to
check: every registered strategy gets a smoke config that resolves (a new strategy is covered
without new code), and the table computes its ratios and rates from the records."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest

from cl_runner.strategies import STRATEGIES
from tests.conftest import REPO, compose_run


def _parts():
    spec = importlib.util.spec_from_file_location("bench_gpu_parts",
                                                  REPO / "scripts" / "bench_gpu_parts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_has_a_smoke_config_that_resolves(strategy):
    parts = _parts()
    args = argparse.Namespace(samples=1000, data_root="/nonexistent", device="cpu")
    run = compose_run(parts.base_overrides(args) + parts.smoke_overrides(strategy, args))
    assert run.strategy.name == strategy and run.benchmark.num_tasks == 2


def test_the_table_gives_ratios_to_the_floor_and_runs_per_hour(tmp_path):
    records = [
        {"part": "env", "device": "NVIDIA H100", "torch": "2.11.0", "cuda": "13.0",
         "python": "3.12.3"},
        {"part": "smoke", "name": "naive", "ok": True, "seconds": 2.0, "average_accuracy": 50.0},
        {"part": "smoke", "name": "gem", "ok": False, "seconds": 1.0, "error": "ImportError: x"},
        {"part": "run", "name": "floor", "tasks": 20, "wall": 40.0, "train_wall": 40.0,
         "steps": 120000, "peak_gpu_mb": 20.0, "floor": True},
        {"part": "run", "name": "naive", "tasks": 20, "wall": 50.0, "train_wall": 45.0,
         "steps": 120000, "peak_gpu_mb": 300.0, "average_accuracy": 46.0, "cpu_accuracy": 45.34},
        {"part": "sweep", "n": 1, "tasks": 2, "wall": 36.0, "ok": True},
        {"part": "sweep", "n": 8, "tasks": 2, "wall": 72.0, "ok": True},
    ]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    markdown = tmp_path / "t.md"
    _parts().part_table(argparse.Namespace(results=str(results), markdown=str(markdown)))
    text = markdown.read_text()
    assert "NVIDIA H100" in text and "1/2 pass" in text and "FAIL: ImportError: x" in text
    # naive: 50 s against the floor's 40 s (45 s without evaluations and data); 120,000 steps
    # in 50 s
    assert "| naive | 20 | 50.0 | 45.0 | 2400 | 1.250 | 1.125 | 300 | 46.00 | 45.34 |" in text
    # n=1: 100 runs/hour; n=8: 8 runs in 72 s = 400 runs/hour, 4x
    assert "| 1 | 2 | 36.0 | 100 | 1.00 | True |" in text
    assert "| 8 | 2 | 72.0 | 400 | 4.00 | True |" in text
