"""Runs that survive (issue 11): every registered strategy resumes after a crash with files
byte-identical to an uninterrupted run; SIGINT/SIGTERM stop cleanly and resume; a resume state
from another config is refused."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cl_runner import resume as resume_mod
from cl_runner.dispatch import resolve
from cl_runner.errors import ConfigError
from cl_runner.experiment import run_experiment
from cl_runner.results.run_folder import differing_keys
from cl_runner.strategies import STRATEGIES
from tests.conftest import (
    FAST,
    REPO,
    compose_cfg,
    compose_run,
    refused_scenario,
    run_crashing_after_task,
    tiny_run_cfg,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = ["benchmark.num_tasks=2", "benchmark.train_samples_per_task=200", "progress=false",
         "hardware=cpu", "hardware.num_threads=1"]
#: files that must be byte-identical between an uninterrupted and a resumed run
RESULT_FILES = ("accuracy_matrix.csv", "metrics.csv")


def result_bytes(folder: Path) -> dict[str, bytes]:
    names = list(RESULT_FILES) + sorted(p.name for p in folder.glob("accuracy_matrix_*.csv"))
    names += ["confusion.csv"] if (folder / "confusion.csv").is_file() else []
    return {name: (folder / name).read_bytes() for name in names}


@pytest.mark.parametrize("strategy", ["naive", "er"])
def test_a_class_il_run_resumes_with_its_task_il_matrix_and_confusion_counts(
        tmp_path, request, monkeypatch, strategy):
    def fresh():
        return resolve(tiny_run_cfg(request, strategy, "split_cifar100",
                                    ["benchmark.scenario=class"]))

    run_experiment(fresh(), tmp_path / "whole")
    run_crashing_after_task(monkeypatch, fresh(), tmp_path / "split")
    assert (tmp_path / "split" / "confusion.csv").is_file()
    run_experiment(fresh(), tmp_path / "split")
    files = result_bytes(tmp_path / "split")
    assert {"accuracy_matrix_task_il.csv", "confusion.csv"} <= set(files)
    assert files == result_bytes(tmp_path / "whole")


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_resumes_byte_identical(tmp_path, request, monkeypatch, strategy):
    """2 tasks of the generated Split CIFAR-100 archive (masks, BatchNorm; tests/conftest.py's
    tiny_run_cfg), supermask strategies with task inference: crash after task 1, resume,
    the result files equal an uninterrupted run's. Real MNIST: the signal tests below."""
    fields = dataclasses.fields(STRATEGIES.get(strategy).config)
    extra = ["strategy.task_inference=true"] if "task_inference" in {f.name for f in fields} else []

    def fresh():
        return resolve(tiny_run_cfg(request, strategy, "split_cifar100", extra))

    run_experiment(fresh(), tmp_path / "whole")

    run_crashing_after_task(monkeypatch, fresh(), tmp_path / "split")
    partial = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert partial["status"] == "failed" and (tmp_path / "split" / "resume.pt").is_file()

    summary = run_experiment(fresh(), tmp_path / "split")
    assert summary["status"] == "complete" and summary["resumed_after_task"] == 1
    assert result_bytes(tmp_path / "split") == result_bytes(tmp_path / "whole")
    assert not (tmp_path / "split" / "resume.pt").exists()  # complete: removed


@pytest.mark.usefixtures("mnist_small_test_set")
@pytest.mark.parametrize("strategy", [["strategy=supsup"],
                                      ["strategy=impresslearn", "strategy.basis_size=2"]])
def test_supermask_run_resumes_after_its_network_grew(tmp_path, mnist_root, monkeypatch,
                                                      strategy):
    """A crash after task 3 of 4: the network then holds 3 score slots (SupSup) or 2 basis
    slots and a coefficient tensor (ImpressLearn), while a resumed run builds it with one
    slot; the resumed run must grow it back and end byte-identical to an uninterrupted one.
    (A crash after task 1, as the test above, never needed that.)"""
    overrides = [*strategy, "benchmark=permuted_mnist", "benchmark.num_tasks=4",
                 "benchmark.train_samples_per_task=200", "benchmark.batch_size=50",
                 "progress=false", "strategy.task_inference=true", f"data.root={mnist_root}"]
    run_experiment(compose_run(overrides), tmp_path / "whole")
    run_crashing_after_task(monkeypatch, compose_run(overrides), tmp_path / "split", task=3)
    summary = run_experiment(compose_run(overrides), tmp_path / "split")
    assert summary["status"] == "complete" and summary["resumed_after_task"] == 3
    assert result_bytes(tmp_path / "split") == result_bytes(tmp_path / "whole")


@pytest.mark.usefixtures("mnist_small_test_set")
def test_resume_state_of_another_config_is_refused_naming_the_keys(tmp_path, mnist_root,
                                                                    monkeypatch):
    overrides = SHORT + [f"data.root={mnist_root}"]
    run_crashing_after_task(monkeypatch, compose_run(overrides), tmp_path)
    saved = (tmp_path / "resume.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"optimizer\.lr.*seed|seed.*optimizer\.lr") as err:
        run_experiment(compose_run(overrides + ["seed=2", "optimizer.lr=0.05"]), tmp_path)
    assert "resume=false" in str(err.value)
    assert (tmp_path / "resume.pt").read_bytes() == saved  # nothing lost
    # resume=false starts over: a complete run from task 1
    summary = run_experiment(compose_run(overrides + ["seed=2", "resume=false"]), tmp_path)
    assert summary["status"] == "complete" and "resumed_after_task" not in summary


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.usefixtures("mnist_small_test_set")
def test_signal_in_process_stops_at_a_step_and_the_run_resumes(tmp_path, mnist_root, monkeypatch,
                                                               sig):
    """The signal arrives right after task 1's resume state is saved (in this process, so in
    the main thread): the run stops with :class:`RunInterrupted` before task 2 completes,
    summary.json says interrupted and keeps task 1's row; the same command resumes it to the
    files of an uninterrupted run. The real-process versions are marked slow below."""
    overrides = SHORT + [f"data.root={mnist_root}"]
    run_experiment(compose_run(overrides), tmp_path / "whole")
    original = resume_mod.ResumeHook.after_evaluation
    handler_before = signal.getsignal(sig)

    def signal_after_task_1(self, task, result):
        original(self, task, result)
        if task == 1:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(resume_mod.ResumeHook, "after_evaluation", signal_after_task_1)
    with pytest.raises(resume_mod.RunInterrupted) as info:
        run_experiment(compose_run(overrides), tmp_path / "split")
    assert info.value.signum == sig and info.value.tasks_done == 1
    assert signal.getsignal(sig) == handler_before  # the run's handler is gone again
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["resume_state"] == "resume.pt"
    rows = (tmp_path / "split" / "accuracy_matrix.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # header + task 1
    monkeypatch.setattr(resume_mod.ResumeHook, "after_evaluation", original)
    done = run_experiment(compose_run(overrides), tmp_path / "split")
    assert done["status"] == "complete" and done["resumed_after_task"] == 1
    assert result_bytes(tmp_path / "split") == result_bytes(tmp_path / "whole")


def test_differing_keys_lists_dotted_paths():
    a = {"seed": 1, "strategy": {"name": "mcsgd", "lmc_lr": 0.1}, "probes": []}
    b = {"seed": 1, "strategy": {"name": "mcsgd", "lmc_lr": 0.2}, "probes": [], "x": 1}
    assert differing_keys(a, b) == ["strategy.lmc_lr", "x"]
    assert differing_keys(a, a) == []


# ------------------------------------------------------------------ real processes

def cl_run(args: list[str], mnist_root: Path) -> subprocess.Popen:
    env = {**os.environ, "CL_RUNNER_DATA": str(mnist_root), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "cl_runner", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll (5 ms) until ``path`` exists; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.005)


def kill_after_task_1_and_resume(tmp_path: Path, mnist_root: Path, strategy: str) -> None:
    args = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=3000", "progress=false",
            "hardware=cpu", "hardware.num_threads=1", f"strategy={strategy}",
            *FAST.get(strategy, [])]  # e.g. GDumb's 128 retraining epochs per task
    if refused_scenario(strategy, compose_cfg([f"strategy={strategy}"])):
        args.append("benchmark=split_mnist")  # class-incremental methods (WA, BiC)
    whole = cl_run(args + [f"hydra.run.dir={tmp_path / 'whole'}"], mnist_root)
    assert whole.wait(300) == 0, whole.communicate()
    split = tmp_path / "split"
    proc = cl_run(args + [f"hydra.run.dir={split}"], mnist_root)
    wait_for(split / "resume.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((split / "summary.json").read_text())["status"] == "running"
    again = cl_run(args + [f"hydra.run.dir={split}"], mnist_root)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    summary = json.loads((split / "summary.json").read_text())
    assert summary["status"] == "complete" and 1 <= summary["resumed_after_task"] <= 2
    assert result_bytes(split) == result_bytes(tmp_path / "whole")


@pytest.mark.slow
def test_sigkill_after_task_1_then_resume_is_byte_identical(tmp_path, mnist_root):
    kill_after_task_1_and_resume(tmp_path, mnist_root, "mcsgd")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_sigkill_and_resume_every_strategy(tmp_path, mnist_root, strategy):
    kill_after_task_1_and_resume(tmp_path, mnist_root, strategy)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_and_the_run_resumes(tmp_path, mnist_root, sig, code):
    args = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=6000", "progress=false",
            "hardware=cpu", "hardware.num_threads=1", f"hydra.run.dir={tmp_path}"]
    proc = cl_run(args, mnist_root)
    wait_for(tmp_path / "resume.pt", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["resume_state"] == "resume.pt"
    last = err.strip().splitlines()[-1]
    assert f"interrupted by {sig.name}" in last and f"hydra.run.dir={tmp_path}" in last
    rows = (tmp_path / "accuracy_matrix.csv").read_text().strip().splitlines()
    assert len(rows) >= 2  # header + the finished task(s): nothing lost
    again = cl_run(args, mnist_root)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    done = json.loads((tmp_path / "summary.json").read_text())
    assert done["status"] == "complete" and done["resumed_after_task"] >= 1


@pytest.mark.usefixtures("mnist_small_test_set")
def test_a_resume_state_from_before_a_config_key_was_added_still_resumes(tmp_path, mnist_root,
                                                                          monkeypatch):
    """A resume state written by an older version, whose config lacks keys added since
    (``eval``, ``benchmark.validation_fraction``), resumes when the new keys are at their
    defaults (found when a sweep running across such a change was relaunched)."""
    import torch

    overrides = SHORT + [f"data.root={mnist_root}"]
    run_crashing_after_task(monkeypatch, compose_run(overrides), tmp_path)
    path = tmp_path / "resume.pt"
    state = torch.load(path, weights_only=False)
    del state["config"]["eval"]
    del state["config"]["benchmark"]["validation_fraction"]
    torch.save(state, path)
    summary = run_experiment(compose_run(overrides), tmp_path)
    assert summary["status"] == "complete" and summary["resumed_after_task"] == 1
