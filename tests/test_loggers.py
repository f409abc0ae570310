"""Loggers (issue 15): TensorBoard and W&B run for real, offline, and what they wrote is read
back with their own readers (TensorBoard's EventAccumulator; the records of W&B's offline run
file); a missing package is refused before any data are read; a logger's failure at the end
does not turn a complete run into a failed one."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from cl_runner import loggers
from cl_runner.errors import ConfigError
from cl_runner.experiment import run_experiment
from tests.conftest import compose_run, run_crashing_after_task

SHORT = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=200", "progress=false",
         "hardware=cpu", "hardware.num_threads=1", "eval.every_steps=10",
         "eval.subset_size=200"]


def wandb_records(path: Path):
    """The protobuf records of a W&B offline run file (``run-<id>.wandb``): a 7-byte W&B
    header, then LevelDB-log chunks (4-byte checksum, 2-byte length, 1-byte type: 1 full,
    2 first, 3 middle, 4 last) in 32 KiB blocks. Our reader, for the test only (wandb 0.31
    has no public one)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def item_key(item) -> str:
    """A history or summary item's name (W&B stores it in ``key`` or ``nested_key``)."""
    return item.key or "/".join(item.nested_key)


def wandb_history(folder: Path) -> tuple[list[dict], dict, str]:
    """``(history rows, final summary, run id)`` of the one offline run under ``folder``."""
    files = sorted((folder / "wandb").glob("offline-run-*/run-*.wandb"))
    assert files, f"no W&B offline run under {folder}"
    history, summary, run_id = [], {}, None
    for path in files:
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.append({item_key(item): json.loads(item.value_json)
                                for item in record.history.item})
            elif kind == "summary":
                summary.update({item_key(item): json.loads(item.value_json)
                                for item in record.summary.update})
            elif kind == "run":
                run_id = record.run.run_id
    return history, summary, run_id


@pytest.mark.usefixtures("mnist_small_test_set")
def test_tensorboard_event_files_hold_the_runs_metrics(tmp_path, mnist_root):
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run_experiment(compose_run(SHORT + [f"data.root={mnist_root}",
                                                  "logger=tensorboard"]), tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"),
                              size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    average = events.Scalars("task/average_accuracy")
    assert [e.step for e in average] == [1, 2, 3]
    assert [e.value for e in average] == pytest.approx(summary["average_accuracy_per_task"])
    assert events.Scalars("final/average_accuracy")[0].value == \
        pytest.approx(summary["average_accuracy"])
    assert events.Scalars("final/min_acc")[0].value == pytest.approx(summary["min_acc"])
    task1 = events.Scalars("continual/accuracy_task_01")
    frame = pd.read_csv(tmp_path / "continual_eval.csv")  # every point evaluates task 1,
    assert len(task1) == frame.global_step.nunique()  # one point per step (issue 34 item 9)
    assert [e.step for e in task1] == sorted(e.step for e in task1)
    assert "accuracy_matrix" in tags["images"] and "config/text_summary" in tags["tensors"]


@pytest.mark.usefixtures("mnist_small_test_set")
def test_wandb_offline_run_holds_the_metrics_and_a_resumed_run_continues_it(
        tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = SHORT + [f"data.root={mnist_root}", "logger=wandb", "logger.mode=offline"]
    run_crashing_after_task(monkeypatch, compose_run(overrides), tmp_path)
    summary = run_experiment(compose_run(overrides), tmp_path)
    assert summary["resumed_after_task"] == 1

    history, final, run_id = wandb_history(tmp_path)
    assert run_id == (tmp_path / loggers.WANDB_ID_FILE).read_text().strip()
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2  # one run, continued
    per_task = {row["task"]: row["task/average_accuracy"] for row in history if "task" in row}
    assert [per_task[t] for t in (1, 2, 3)] == pytest.approx(summary["average_accuracy_per_task"])
    steps = [row["global_step"] for row in history if "global_step" in row]
    assert len(steps) >= summary["continual_eval_points"]  # task 1's points, then the rest
    assert final["final/average_accuracy"] == pytest.approx(summary["average_accuracy"])
    assert final["status"] == "complete"
    tables = [row for row in history if row.get("accuracy_matrix/_type") == "table-file"]
    assert len(tables) == 2 and tables[-1]["accuracy_matrix/nrows"] == 3  # crash, then the end
    assert list((tmp_path / "wandb").glob("offline-run-*/files/media/images/accuracy_matrix*"))


def test_a_missing_logger_package_is_refused_before_data_are_read(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    run = compose_run(SHORT + ["data.root=/nonexistent", "data.download=false", "logger=wandb"])
    with pytest.raises(ConfigError, match=r"loggers extra"):
        run_experiment(run, tmp_path / "run")


@pytest.mark.usefixtures("mnist_small_test_set")
def test_a_logger_failing_at_the_end_leaves_the_result_complete(tmp_path, mnist_root,
                                                                monkeypatch, caplog):
    def broken(self, summary):
        raise OSError("disk full")

    monkeypatch.setattr(loggers.TensorBoardLogger, "finish", broken)
    summary = run_experiment(compose_run(SHORT + [f"data.root={mnist_root}",
                                                  "logger=tensorboard"]), tmp_path)
    assert summary["status"] == "complete"
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "complete"
    assert "disk full" in caplog.text


# ---- issue 34 item 9: training loss and lr, one point per step, numbers, wandb sync -------

class Collecting(loggers.MetricLogger):
    def __init__(self, every_steps: int) -> None:
        super().__init__("unused", {}, 2, every_steps)
        self.sent: list[tuple[str, int, dict[str, float]]] = []

    def scalars(self, values, axis, step):
        self.sent.append((axis, step, dict(values)))


def test_training_loss_is_the_window_mean_read_once_per_window(monkeypatch):
    import torch

    from cl_runner.results.continual_metrics import EvalRow
    from cl_runner.training.hooks import PhaseRunner

    syncs = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: syncs.append(1) or real_item(self))
    logger = Collecting(every_steps=4)
    logger.learning_rate = lambda: 0.1
    losses = iter(torch.arange(1.0, 11.0, requires_grad=True) * 1.0)  # 1, 2, ..., 10
    phases = PhaseRunner([logger])
    phases.run(1, "train", 1, 10, lambda: None, lambda state, i: next(losses))
    # windows of 4 steps: mean(1..4) = 2.5 at step 4, mean(5..8) = 6.5 at 8; the phase ends
    # after step 10: mean(9, 10) = 9.5 at 10 (a window never spans two phases)
    assert logger.sent == [("global_step", 4, {"train/loss": 2.5, "train/lr": 0.1}),
                           ("global_step", 8, {"train/loss": 6.5, "train/lr": 0.1}),
                           ("global_step", 10, {"train/loss": 9.5, "train/lr": 0.1})]
    assert len(syncs) == 3  # one host sync per window, none per step
    phases.pop_last_losses()
    line = iter([torch.tensor(3.0), torch.tensor(5.0)])
    phases.run(1, "line", 1, 2, lambda: None, lambda state, i: next(line))
    assert logger.sent[-1] == ("global_step", 12, {"train/loss_line": 4.0})  # no lr there
    # a periodic point and a task end at one step: the task end only, once
    logger.sent.clear()
    logger.continual_eval([EvalRow(5, 20, 1, "step", 1, 0.5, 1.0)])
    logger.continual_eval([EvalRow(5, 20, 1, "task_end", 1, 0.7, 0.9)])
    logger._flush_continual()
    assert logger.sent == [("global_step", 20, {"continual/accuracy_task_01": 0.7,
                                                "continual/loss_task_01": 0.9})]


def test_no_logger_adds_no_per_step_call():
    from cl_runner.training.hooks import PhaseRunner, RunnerHook

    assert PhaseRunner([RunnerHook()])._loss_hooks == []


@pytest.mark.usefixtures("mnist_small_test_set")
def test_tensorboard_carries_the_training_loss_and_one_point_per_step(tmp_path, mnist_root):
    """20 steps per task, eval.every_steps=10 divides it: the last periodic point and the
    task end used to be two points at one step."""
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_experiment(compose_run(SHORT + [f"data.root={mnist_root}", "logger=tensorboard",
                                        "logger.every_steps=5"]), tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(5, 61, 5))  # 3 tasks x 20 steps
    assert all(0 < e.value < 5 for e in loss)
    lr = events.Scalars("train/lr")
    assert [e.step for e in lr] == [e.step for e in loss]
    assert lr[0].value == pytest.approx(compose_run(SHORT).optimizer.lr)
    task1 = events.Scalars("continual/accuracy_task_01")
    steps = [e.step for e in task1]
    assert len(steps) == len(set(steps))  # one point per step
    frame = pd.read_csv(tmp_path / "continual_eval.csv")
    ends = frame[(frame.point == "task_end") & (frame.eval_task == 1)]
    by_step = {e.step: e.value for e in task1}
    assert [by_step[s] for s in ends.global_step] == pytest.approx(ends.accuracy.tolist())


def test_accuracy_heatmap_writes_the_numbers_in_the_cells():
    fig = loggers.accuracy_heatmap([[0.9], [0.456, 0.8]], 2)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["46", "80", "90"]


@pytest.mark.usefixtures("mnist_small_test_set")
def test_wandb_offline_carries_the_training_loss_and_says_how_to_sync(tmp_path, mnist_root,
                                                                      monkeypatch, caplog):
    import logging
    import re

    monkeypatch.setenv("WANDB_SILENT", "true")
    caplog.set_level(logging.INFO, logger="cl_runner.loggers")
    run_experiment(compose_run(SHORT + [f"data.root={mnist_root}", "logger=wandb",
                                        "logger.mode=offline", "logger.every_steps=20"]),
                   tmp_path)
    history, _, _ = wandb_history(tmp_path)
    loss = [(row["global_step"], row["train/loss"]) for row in history if "train/loss" in row]
    assert [step for step, _ in loss] == [20, 40, 60]
    assert all(0 < value < 5 for _, value in loss)
    assert all("train/lr" in row for row in history if "train/loss" in row)
    found = re.search(r"upload it with: wandb sync (\S+)", caplog.text)
    assert found, caplog.text
    synced = Path(found.group(1))
    assert synced.is_dir() and synced.parent == tmp_path / "wandb"
    assert synced.name.startswith("offline-run-") and list(synced.glob("run-*.wandb"))
