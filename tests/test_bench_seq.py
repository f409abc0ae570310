"""scripts/bench_seq.py (the Seq-MNIST rows of scripts/bench.py): which runs an ``--only
seq:...`` list makes, and the per-step ratio to naive of the same repeat."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from cl_runner.cli import CONF_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_seq  # noqa: E402


def test_items_put_naive_first_and_refuse_unknown_names():
    assert bench_seq.seq_items("er_b200,si", CONF_DIR) == ["naive", "er_b200", "si"]
    assert bench_seq.seq_items("si,naive", CONF_DIR) == ["naive", "si"]
    every = bench_seq.seq_items("all", CONF_DIR)
    presets = sorted(p.stem[len("seq_mnist_"):]
                     for p in (Path(CONF_DIR) / "experiment").glob("seq_mnist_*.yaml"))
    assert every[0] == "naive" and sorted(every) == sorted([*presets, *bench_seq.NO_PRESET])
    with pytest.raises(SystemExit, match="seq:nope"):
        bench_seq.seq_items("naive,nope", CONF_DIR)


def test_a_strategy_without_preset_runs_in_naives_regime():
    assert bench_seq.overrides_for("gem", CONF_DIR) == ["+experiment=seq_mnist_gem"]
    assert bench_seq.overrides_for("mas", CONF_DIR) == ["+experiment=seq_mnist_naive",
                                                        "strategy=mas", "strategy.mas_lambda=0.1"]
    assert bench_seq.overrides_for("si", CONF_DIR) == ["+experiment=seq_mnist_si"]
    cfg = bench_seq.compose_config(bench_seq.overrides_for("mas", CONF_DIR), "/nowhere", 50, 1)
    assert (cfg.strategy.name, cfg.benchmark.name, cfg.benchmark.train_samples_per_task,
            cfg.hardware.num_threads, cfg.data.download) == ("mas", "split_mnist", 50, 1, False)
    assert cfg.strategy.mas_lambda == 0.1  # finite at naive's lr (the schema's 1 diverges)


def run(train_seconds, steps, phases=None):
    return {"train_seconds": train_seconds, "steps": steps, "phase_seconds": phases or {},
            "boundary_seconds": 0.5, "eval_seconds": 1.0, "seconds": 9.0,
            "average_accuracy": 0.5, "preset": ["+experiment=x"]}


def test_ratio_is_per_repeat_against_naive_then_median():
    """Repeat 1: naive 1 ms/step, er 3 ms/step (x3); repeat 2: naive 2, er 2 (x1); repeat 3:
    naive 1, er 1.5 (x1.5): median 1.5, while the ratio of the medians would be 2 / 1 = 2."""
    runs = {"seq:naive": [run(1.0, 1000), run(2.0, 1000), run(1.0, 1000)],
            "seq:er": [run(3.0, 1000), run(2.0, 1000), run(1.5, 1000)],
            "seq:gdumb": [run(0.0, 0, {"memory": 4.0})] * 3}
    report: dict = {}
    bench_seq.report_seq(Console(file=io.StringIO()), runs,
                         SimpleNamespace(samples=None, repeats=3), report)
    er = report["seq"]["er"]
    assert er["ratio_per_repeat"] == pytest.approx([3.0, 1.0, 1.5])
    assert er["ratio_to_naive_per_step"] == pytest.approx(1.5)
    assert er["ms_per_step"] == pytest.approx(2.0)
    gdumb = report["seq"]["gdumb"]
    assert gdumb["own_phase_seconds"] == 4.0 and gdumb["phases"] == ["memory"]


def test_a_failed_item_is_a_row_saying_why_and_the_others_keep_their_numbers():
    """A strategy that diverges in the bench's regime (MAS in naive's, 2026-12-07) gives a
    ``failed`` row instead of ending the whole bench."""
    runs = {"seq:naive": [run(1.0, 1000), run(2.0, 1000)],
            "seq:mas": [run(1.0, 1000), {"failed": "TrainingDivergedError: task 2 is nan"}],
            "seq:er": [run(2.0, 1000), run(2.0, 1000)]}
    report: dict = {}
    out = io.StringIO()
    bench_seq.report_seq(Console(file=out, width=200), runs,
                         SimpleNamespace(samples=None, repeats=2), report)
    assert report["seq"]["mas"] == {"failed": "TrainingDivergedError: task 2 is nan"}
    assert report["seq"]["er"]["ratio_per_repeat"] == pytest.approx([2.0, 1.0])
    assert "failed: TrainingDivergedError" in out.getvalue()
