"""Data safety, round 3 (issue 30): a diverged task never reaches the resume state, the
checkpoint index survives a resume, one run folder takes one process at a time, a refused
resume changes no file, a result is trusted only when its files match its config, every
attempt of a resumed run is recorded, one manifest of the files a run writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cl_runner.errors import TrainingDivergedError
from cl_runner.experiment import run_experiment
from cl_runner.results import run_folder as rf
from tests.conftest import compose_run

pytestmark = pytest.mark.usefixtures("one_thread", "mnist_small_test_set")

TINY = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=300", "progress=false",
        "hardware=cpu", "hardware.num_threads=1"]


def tiny(mnist_root: Path, *extra: str):
    return compose_run([*TINY, f"data.root={mnist_root}", *extra])


# ------------------------------------------------------------- 1. a diverged task is never kept

def test_a_diverged_run_never_becomes_complete(tmp_path, mnist_root):
    """The issue's commands: the same diverging run launched four times into one folder.
    Before the fix, each launch resumed from the NaN weights the previous one saved and the
    fourth was ``complete``; now each one reruns from its last good state and fails again."""
    for _ in range(4):
        with pytest.raises(TrainingDivergedError, match="task 1"):
            run_experiment(tiny(mnist_root, "optimizer.lr=1e6"), tmp_path)
        summary = rf.read_summary(tmp_path)
        assert summary["status"] == "failed" and "resumed_after_task" not in summary
        assert not (tmp_path / rf.RESUME_FILE).exists()  # task 1 diverged: nothing good to keep
        assert not (tmp_path / rf.ACCURACY_MATRIX).exists()  # no row of a diverged task


def test_a_run_diverging_at_task_2_reruns_from_task_1(tmp_path, mnist_root):
    """MC-SGD's line phase diverges at task 2: the resume state stays that of task 1 (finite
    weights), the files hold task 1's row only, and a relaunch resumes after task 1 and
    diverges again instead of going on from NaN weights."""
    run = ["strategy=mcsgd", "strategy.lmc_lr=1e30", "strategy.subset_size=50",
           "strategy.lmc_batch_size=10", "strategy.line_samples=2"]
    for attempt in range(2):
        with pytest.raises(TrainingDivergedError, match="line-phase loss of task 2"):
            run_experiment(tiny(mnist_root, *run), tmp_path)
        state = torch.load(tmp_path / rf.RESUME_FILE, weights_only=False)
        assert state["task"] == 1
        assert all(torch.isfinite(v).all() for v in state["model"].values())
        assert rf.read_accuracy_matrix(tmp_path / rf.ACCURACY_MATRIX).shape == (1, 3)
        summary = rf.read_summary(tmp_path)
        assert summary["status"] == "failed"
        assert summary.get("resumed_after_task") == (1 if attempt else None)



def test_a_resume_state_with_non_finite_weights_is_refused(tmp_path, mnist_root):
    """A ``resume.pt`` holding NaN weights (written after a diverged task by an older
    cl_runner) is refused, naming the way out, and the folder is left as it was."""
    from tests.conftest import run_crashing_after_task

    monkeypatch = pytest.MonkeyPatch()
    try:
        run_crashing_after_task(monkeypatch, tiny(mnist_root), tmp_path)
    finally:
        monkeypatch.undo()
    state = torch.load(tmp_path / rf.RESUME_FILE, weights_only=False)
    first = next(iter(state["model"]))
    state["model"][first] = torch.full_like(state["model"][first], math.nan)
    torch.save(state, tmp_path / rf.RESUME_FILE)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(rf.RunFolderError, match="non-finite weights.*resume=false"):
        run_experiment(tiny(mnist_root), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    summary = json.loads((tmp_path / rf.SUMMARY).read_text())
    assert summary["status"] == "failed"  # the crashed run's own record, untouched


# ------------------------------------------------------------- 4, 7. a refusal changes no file

def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (``.hydra/`` included) but the log, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".log"}


def interrupt_after_task_1(monkeypatch, cl_run_here, args: list[str]) -> None:
    """``cl-run ARGS`` stopped by a signal right after task 1's resume state (exit 130)."""
    from cl_runner import resume as resume_mod
    from cl_runner.errors import RunInterrupted

    original = resume_mod.ResumeHook.after_evaluation

    def after_evaluation(self, done, result):
        original(self, done, result)
        raise RunInterrupted(2, done)

    with monkeypatch.context() as patch:
        patch.setattr(resume_mod.ResumeHook, "after_evaluation", after_evaluation)
        code, _, err = cl_run_here(args)
    assert code == 130, err[-2000:]


def test_a_refused_resume_changes_no_file(tmp_path, mnist_root, monkeypatch, cl_run_here):
    """The issue's case: an interrupted seed-1 run, then seed=2 into the same folder: refused
    (exit 2, one line), and ``.hydra/`` still says seed 1, ``summary.json`` still
    ``interrupted``."""
    folder = tmp_path / "run"
    base = [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={folder}"]
    interrupt_after_task_1(monkeypatch, cl_run_here, base)
    before = folder_bytes(folder)
    assert rf.read_summary(folder)["status"] == "interrupted"
    assert "seed=2" not in before[".hydra/overrides.yaml"].decode()

    code, _, err = cl_run_here([*base, "seed=2"])
    assert code == 2
    [line] = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith(f"error: {folder}/resume.pt comes from a run with a different "
                           f"config (differs at: seed)")
    assert folder_bytes(folder) == before
    # the same command resumes it
    code, _, err = cl_run_here(base)
    assert code == 0, err[-2000:]
    assert rf.read_summary(folder)["status"] == "complete"


@pytest.mark.parametrize("bad", [
    "benchmark.train_samples_per_task=100000",  # refused while the config is resolved
    "eval.every_steps=0",  # refused once the run is built, before any data are read
    "strategy=ewc strategy.ewc_lambda=-1",  # a strategy's own check
])
def test_a_value_error_leaves_nothing(tmp_path, mnist_root, cl_run_here, bad):
    """An invalid value is refused before the run starts: no ``summary.json``, no ``.hydra/``
    (so ``cl-summarize`` does not list a failed run), and a complete result in the folder is
    left as it was, even with ``force=true``."""
    folder = tmp_path / "new"
    code, _, err = cl_run_here([*TINY, f"data.root={mnist_root}", f"hydra.run.dir={folder}",
                                *bad.split()])
    assert code == 2 and err.startswith("error: "), err[-2000:]
    assert not folder.exists() or folder_bytes(folder) == {}

    done = tmp_path / "done"
    args = [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={done}"]
    assert cl_run_here(args)[0] == 0
    before = folder_bytes(done)
    code, _, err = cl_run_here([*args, "force=true", *bad.split()])
    assert code == 2, err[-2000:]
    assert folder_bytes(done) == before


# ------------------------------------------------------------- 2. the checkpoint index

def test_the_checkpoint_index_survives_a_resume(tmp_path, mnist_root, monkeypatch):
    """Crash after task 1 and resume: ``checkpoints/index.csv`` still lists the initial
    weights and task 1 (it was rebuilt from nothing in the resumed process), equal to an
    uninterrupted run's index."""
    from cl_runner.results.checkpoints import read_index
    from tests.conftest import run_crashing_after_task

    overrides = ["checkpoints.enabled=true"]
    run_experiment(tiny(mnist_root, *overrides), tmp_path / "whole")
    run_crashing_after_task(monkeypatch, tiny(mnist_root, *overrides), tmp_path / "split")
    run_experiment(tiny(mnist_root, *overrides), tmp_path / "split")
    index = read_index(tmp_path / "split")
    assert list(index["name"]) == ["init", "w_hat_1", "w_hat_2", "w_hat_3"]
    assert index.equals(read_index(tmp_path / "whole"))


# ------------------------------------------------------------- 3. one process per run folder

RACER = """
import os, sys, time
from pathlib import Path
from cl_runner.results import run_folder as rf

gate, args = Path(sys.argv[1]), sys.argv[2:]
check = rf.check_run_folder

def held_open(*a, **k):  # both processes pass the folder check before either writes
    out = check(*a, **k)
    (gate / f"in_{os.getpid()}").touch()
    deadline = time.time() + 120
    while (len(list(gate.glob("in_*"))) < 2 and not (gate / "go").exists()
           and time.time() < deadline):
        time.sleep(0.05)
    return out

rf.check_run_folder = held_open
from cl_runner.cli import run
sys.argv = ["cl-run", *args]
run()
"""


def test_two_processes_started_into_one_folder_one_is_refused(tmp_path, mnist_root):
    """Two different configs launched at the same moment into one ``hydra.run.dir``, in two
    real processes. The race is made certain: each process, once past the folder check, waits
    until the other one is past it too (or has exited). Before the fix both ran, both exited
    0 and one result was lost; now the second one cannot take the folder's lock: exit 2, one
    line, and the folder holds the first one's result."""
    import os
    import subprocess
    import sys
    import time

    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "racer.py").write_text(RACER)
    folder = tmp_path / "run"
    env = dict(os.environ, CL_RUNNER_DATA=str(mnist_root), COLUMNS="1000")
    procs = {seed: subprocess.Popen(
        [sys.executable, str(tmp_path / "racer.py"), str(gate), *TINY, "benchmark.num_tasks=1",
         f"seed={seed}", f"hydra.run.dir={folder}"], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (1, 2)}
    deadline = time.time() + 300
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            (gate / "go").touch()  # one is done (refused): let the other go on
        time.sleep(0.2)
    out = {seed: p.communicate(timeout=60) for seed, p in procs.items()}
    codes = {seed: p.returncode for seed, p in procs.items()}
    assert sorted(codes.values()) == [0, 2], (codes, out)
    [winner] = [seed for seed, code in codes.items() if code == 0]
    [loser] = [seed for seed, code in codes.items() if code == 2]
    [line] = [ln for ln in out[loser][1].splitlines() if ln.strip()]
    assert line.startswith(f"error: {folder} is in use by another process"), line
    summary = rf.read_summary(folder)
    assert summary["status"] == "complete" and summary["seed"] == winner
    assert f"seed={winner}" in (folder / ".hydra" / "overrides.yaml").read_text()


# ------------------------------------------------------------- 5, 6. a result is checked first

def complete_run(cl_run_here, mnist_root: Path, folder: Path, *extra: str) -> list[str]:
    args = [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={folder}", *extra]
    code, _, err = cl_run_here(args)
    assert code == 0, err[-2000:]
    return args


def test_a_result_that_lost_a_row_is_not_trusted(tmp_path, mnist_root, cl_run_here):
    """``accuracy_matrix.csv`` of a complete 3-task run cut to 2 rows: ``cl-run`` refuses the
    folder instead of skipping it as done, the Python API refuses to load it, ``force=true``
    runs it again."""
    from cl_runner.api import load_run

    folder = tmp_path / "run"
    args = complete_run(cl_run_here, mnist_root, folder)
    matrix = folder / rf.ACCURACY_MATRIX
    matrix.write_text("".join(matrix.read_text().splitlines(keepends=True)[:-1]))
    before = folder_bytes(folder)
    code, _, err = cl_run_here(args)
    assert code == 2
    [line] = [ln for ln in err.splitlines() if ln.strip()]
    assert line == (f"error: {folder} holds a damaged result (accuracy_matrix.csv has 2 rows "
                    f"for 3 tasks); choose another run folder, or force=true to replace it")
    assert folder_bytes(folder) == before
    with pytest.raises(ValueError, match="damaged result: accuracy_matrix.csv has 2 rows"):
        load_run(folder)
    code, _, err = cl_run_here([*args, "force=true"])
    assert code == 0, err[-2000:]
    assert load_run(folder).accuracy_matrix.shape == (3, 3)


def test_a_garbage_summary_is_a_reason_to_refuse(tmp_path, mnist_root, cl_run_here):
    """A complete run whose ``summary.json`` became garbage: another config is refused (it
    used to overwrite the folder silently, exit 0), the folder left as it was."""
    folder = tmp_path / "run"
    args = complete_run(cl_run_here, mnist_root, folder)
    (folder / rf.SUMMARY).write_text("{ not json")
    before = folder_bytes(folder)
    code, _, err = cl_run_here([*args, "seed=2"])
    assert code == 2
    [line] = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith(f"error: {folder / rf.SUMMARY}: malformed JSON")
    assert line.endswith("choose another run folder, or force=true to replace it")
    assert folder_bytes(folder) == before
    code, _, err = cl_run_here([*args, "seed=2", "force=true"])
    assert code == 0, err[-2000:]
    assert rf.read_summary(folder)["seed"] == 2


# ------------------------------------------------------------- 9. every attempt is recorded

def test_every_attempt_of_a_resumed_run_is_recorded(tmp_path, mnist_root, monkeypatch):
    """Crashed after task 1, crashed again after task 2, then completed: ``summary.json`` lists
    the three attempts; ``started_at`` is the first one's, ``wall_time_seconds`` their sum, and
    ``continual_eval_points`` counts every process's points (as many as an uninterrupted run),
    not only the last one's."""
    from tests.conftest import run_crashing_after_task

    overrides = ["eval.every_steps=5"]
    whole = run_experiment(tiny(mnist_root, *overrides), tmp_path / "whole")
    folder = tmp_path / "split"
    run_crashing_after_task(monkeypatch, tiny(mnist_root, *overrides), folder, task=1)
    first = rf.read_summary(folder)
    run_crashing_after_task(monkeypatch, tiny(mnist_root, *overrides), folder, task=2)
    summary = run_experiment(tiny(mnist_root, *overrides), folder)
    attempts = summary["attempts"]
    assert [a["resumed_after_task"] for a in attempts] == [None, 1, 2]
    assert summary["resumed_after_task"] == 2  # the last resume, as before
    assert summary["started_at"] == attempts[0]["started_at"] == first["started_at"]
    assert all(a["wall_time_seconds"] > 0 for a in attempts)
    assert summary["wall_time_seconds"] == pytest.approx(
        sum(a["wall_time_seconds"] for a in attempts))
    assert summary["continual_eval_points"] == whole["continual_eval_points"]
    assert sum(a["continual_eval_points"] for a in attempts) == whole["continual_eval_points"]
    assert [a["resumed_after_task"] for a in whole["attempts"]] == [None]


# ------------------------------------------------------------- the manifest of a run's files

def test_a_run_with_every_option_writes_only_manifest_files(tmp_path, mnist_root):
    """Checkpoints, probes, continual evaluation and TensorBoard on: every file and folder the
    run leaves at the top of its folder is declared in the manifest."""
    from fnmatch import fnmatch

    pytest.importorskip("tensorboard")
    run_experiment(tiny(mnist_root, "benchmark.num_tasks=2", "checkpoints.enabled=true",
                        "probes=[gradient_conflict]", "eval.every_steps=10",
                        "logger=tensorboard"), tmp_path)
    declared = [pattern for pattern, _ in rf.RESULT_FILES] + list(rf.KEPT_FILES)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {rf.CHECKPOINTS, rf.TENSORBOARD, rf.CONTINUAL_EVAL, rf.DIAGNOSTICS} <= set(names)
    assert [n for n in names if not any(fnmatch(n, d) for d in declared)] == []


def test_force_and_resume_false_leave_no_stale_file(tmp_path, mnist_root, monkeypatch,
                                                    cl_run_here):
    """A forced run replaces a result that had a curve, checkpoints, TensorBoard events, a
    W&B run id, an objective and a class table: none of them outlives it (cl-summarize read
    the stale curve, the logger went on in the old W&B run). The same for ``resume=false``
    over an interrupted run. The logs and ``.hydra/`` stay."""
    folder = tmp_path / "run"
    extra = ["benchmark.num_tasks=2", "eval.every_steps=10", "checkpoints.enabled=true"]
    args = complete_run(cl_run_here, mnist_root, folder, *extra)
    stale = {rf.TENSORBOARD: None, rf.WANDB_RUN_ID: "0123abcd\n", rf.OBJECTIVE: "{}\n",
             "classes.csv": "task,class\n"}
    for name, text in stale.items():
        if text is None:
            (folder / name).mkdir()
            (folder / name / "events.out.tfevents.1").write_text("old")
        else:
            (folder / name).write_text(text)
    assert (folder / rf.CONTINUAL_EVAL).is_file() and (folder / rf.CHECKPOINTS).is_dir()

    def left(folder: Path) -> set[str]:
        return {p.name for p in folder.iterdir()}

    plain = [a for a in args if a not in extra] + ["benchmark.num_tasks=2"]
    code, _, err = cl_run_here([*plain, "force=true"])
    assert code == 0, err[-2000:]
    after = left(folder)
    assert not after & {rf.CONTINUAL_EVAL, rf.CHECKPOINTS, *stale}, after
    assert {rf.SUMMARY, rf.ACCURACY_MATRIX, rf.HYDRA_DIR} <= after

    # resume=false over an interrupted run with a curve: the curve goes with the rest
    interrupted = tmp_path / "interrupted"
    base = [*TINY, f"data.root={mnist_root}", f"hydra.run.dir={interrupted}",
            "eval.every_steps=10"]
    interrupt_after_task_1(monkeypatch, cl_run_here, base)
    (interrupted / rf.WANDB_RUN_ID).write_text("0123abcd\n")
    code, _, err = cl_run_here([*base[:-1], "resume=false"])
    assert code == 0, err[-2000:]
    assert not left(interrupted) & {rf.CONTINUAL_EVAL, rf.WANDB_RUN_ID, rf.RESUME_FILE}
    assert rf.read_summary(interrupted)["attempts"][0]["resumed_after_task"] is None


def test_a_forced_run_starts_a_new_wandb_run(tmp_path, mnist_root, cl_run_here):
    """logger=wandb (offline): a resumed run continues its W&B run, a forced one starts a new
    one (it used to log into the replaced run's)."""
    pytest.importorskip("wandb")
    folder = tmp_path / "run"
    args = complete_run(cl_run_here, mnist_root, folder, "benchmark.num_tasks=1",
                        "logger=wandb", "logger.mode=offline")
    first = (folder / rf.WANDB_RUN_ID).read_text()
    code, _, err = cl_run_here([*args, "force=true"])
    assert code == 0, err[-2000:]
    assert (folder / rf.WANDB_RUN_ID).read_text() != first
