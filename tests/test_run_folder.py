"""Run folders are never silently replaced: unique default folders, a complete result of another
config refused (force=true replaces it), a live run refused and a crashed one resumed, sweep job
folders named by their overrides, paths with [brackets] shown as they are, interrupted runs
listed as such by cl-summarize."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from cl_runner import summarize as S
from cl_runner.cli import CONF_DIR, override_arg
from cl_runner.experiment import run_experiment
from cl_runner.results import run_folder as rf
from cl_runner.results.names import MAX_NAME, job_folder_name
from tests.conftest import compose_run, run_crashing_after_task
from tests.test_summarize import make_run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["benchmark.num_tasks=2", "benchmark.train_samples_per_task=200", "progress=false",
        "hardware=cpu", "hardware.num_threads=1"]


def cl_run(args: list[str], mnist_root: Path, cwd: Path | None = None,
           wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    env = dict(os.environ, CL_RUNNER_DATA=str(mnist_root), HYDRA_FULL_ERROR="0", COLUMNS="1000")
    command = [sys.executable, "-m", "cl_runner", *args]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (``.hydra/`` included), by relative path; the log is left
    out (a refused run appends its one line to it)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".log"}


def check_two_run_folders(outputs: Path) -> None:
    folders = sorted(p.parent for p in (outputs / "runs").rglob("summary.json"))
    assert len(folders) == 2, folders  # same config, same second: still two folders
    for folder in folders:
        assert json.loads((folder / "summary.json").read_text())["status"] == "complete"
        assert (folder / "accuracy_matrix.csv").is_file()
    # HH-MM-SS-microseconds_benchmark_strategy_seedN
    stamp = folders[0].name.split("_")[0]
    assert len(stamp.split("-")) == 4 and len(stamp.split("-")[3]) == 6


@pytest.mark.usefixtures("mnist_small_test_set")
def test_two_runs_of_one_config_get_two_folders(tmp_path, mnist_root, monkeypatch, cl_run_here):
    monkeypatch.setenv("CL_RUNNER_DATA", str(mnist_root))
    monkeypatch.chdir(tmp_path)  # the default folder: outputs/runs/... under the working dir
    for _ in range(2):
        code, _, err = cl_run_here([*TINY, "seed=1"])
        assert code == 0, err[-3000:]
    check_two_run_folders(tmp_path / "outputs")


@pytest.mark.slow  # the same folders as the in-process test above, from 2 concurrent processes
def test_two_runs_started_together_get_two_folders(tmp_path, mnist_root):
    procs = [cl_run([*TINY, "seed=1"], mnist_root, cwd=tmp_path, wait=False) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    check_two_run_folders(tmp_path / "outputs")


@pytest.mark.usefixtures("mnist_small_test_set")
def test_other_config_refused_naming_keys_force_replaces(tmp_path, mnist_root, monkeypatch,
                                                         cl_run_here):
    monkeypatch.setenv("CL_RUNNER_DATA", str(mnist_root))
    folder = tmp_path / "res[1]"  # brackets: shown as they are, not taken for rich markup
    code, out, err = cl_run_here([*TINY, f"hydra.run.dir='{folder}'"])
    assert code == 0, err[-3000:]
    assert f"run folder: {folder}" in out
    before = folder_bytes(folder)
    assert ".hydra/overrides.yaml" in before and "summary.json" in before

    code, _, err = cl_run_here([*TINY, "seed=2", "optimizer.lr=0.05", f"hydra.run.dir='{folder}'"])
    assert code == 2
    [line] = [ln for ln in err.splitlines() if ln.strip()]
    assert line == (f"error: {folder} holds a complete result of another config (differs at: "
                    f"optimizer.lr, seed); choose another run folder, or force=true to replace it")
    assert folder_bytes(folder) == before  # nothing lost, .hydra/ included

    (folder / "accuracy_matrix_stale.csv").write_text("left by the old run\n")
    code, _, err = cl_run_here([*TINY, "seed=2", "force=true", f"hydra.run.dir='{folder}'"])
    assert code == 0, err[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["seed"] == 2
    assert not (folder / "accuracy_matrix_stale.csv").exists()  # the old result's files went
    assert "seed=2" in (folder / ".hydra" / "overrides.yaml").read_text()


def crash_after_task_1(monkeypatch, overrides: list[str], folder: Path) -> None:
    """Leave ``folder`` as a run killed after task 1 leaves it: resume.pt of task 1 and
    ``status: running`` (the SIGKILL case; the process never got to write another status)."""
    run_crashing_after_task(monkeypatch, compose_run(overrides), folder)
    summary = json.loads((folder / "summary.json").read_text())
    rf.write_summary(folder, {**summary, "status": "running"})


@pytest.mark.usefixtures("mnist_small_test_set")
def test_live_process_refused_dead_process_resumes(tmp_path, mnist_root, monkeypatch):
    overrides = [*TINY, f"data.root={mnist_root}"]
    folder = tmp_path / "run"
    crash_after_task_1(monkeypatch, overrides, folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["pid"] == os.getpid() and summary["host"] == socket.gethostname()

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        record = {**summary, "pid": live.pid, "pid_start": rf._proc_stat(live.pid)[1]}
        rf.write_summary(folder, record)
        before = folder_bytes(folder)
        with pytest.raises(rf.RunFolderError) as err:
            run_experiment(compose_run(overrides), folder)
        assert str(err.value) == (f"{folder} is in use: its run is still going on in process "
                                  f"{live.pid} on {socket.gethostname()}; wait for it, stop it, "
                                  f"or choose another run folder")
        with pytest.raises(rf.RunFolderError):  # force=true does not take a live run's folder
            rf.check_run_folder(folder, {}, force=True)
        assert folder_bytes(folder) == before
        # the same pid recorded with another start time: a reused pid, not the run
        assert not rf.process_alive(live.pid, socket.gethostname(), record["pid_start"] + 1)
    finally:
        live.kill()
        live.wait()
    # the process is gone: a crashed run, resumed after its last finished task
    assert not rf.process_alive(live.pid, socket.gethostname(), record["pid_start"])
    result = run_experiment(compose_run(overrides), folder)
    assert result["status"] == "complete" and result["resumed_after_task"] == 1
    assert not (folder / rf.RESUME_FILE).exists()


@pytest.mark.slow  # two subprocess sweeps
def test_second_sweep_into_the_same_dir_adds_folders(tmp_path, mnist_root):
    sweep_dir = tmp_path / "sweep"
    first = cl_run(["-m", "strategy=naive", "seed=1", *TINY, f"hydra.sweep.dir={sweep_dir}"],
                   mnist_root)
    assert first.returncode == 0, first.stderr[-3000:]
    [old] = [p for p in sweep_dir.iterdir() if p.is_dir()]
    # strategy and seed first; no progress, no hardware (result-neutral, not swept)
    assert old.name == "strategy=naive,seed=1,benchmark.num_tasks=2,benchmark.train_samples_per_task=200"
    before = folder_bytes(old)
    second = cl_run(["-m", "strategy=naive", "seed=2,3", *TINY, f"hydra.sweep.dir={sweep_dir}"],
                    mnist_root)
    assert second.returncode == 0, second.stderr[-3000:]
    folders = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert len(folders) == 3 and old.name in folders
    assert folder_bytes(old) == before  # the first sweep's result untouched
    summary = S.summarize([sweep_dir], out=tmp_path / "summary", plots=False)
    assert [len(g.runs) for g in summary.groups] == [3] and not summary.excluded


@pytest.mark.slow  # two subprocess sweeps
def test_sweep_job_refused_in_a_folder_of_another_config_the_others_run(tmp_path, mnist_root):
    sweep_dir = tmp_path / "sweep"
    first = cl_run(["-m", "seed=1", *TINY, f"hydra.sweep.dir={sweep_dir}"], mnist_root)
    assert first.returncode == 0, first.stderr[-3000:]
    [old] = [p for p in sweep_dir.iterdir() if p.is_dir()]
    # a config change that the folder name does not show (here the stored lr is edited)
    summary = json.loads((old / "summary.json").read_text())
    summary["config"]["optimizer"]["lr"] = 0.5
    rf.write_summary(old, summary)
    before = folder_bytes(old)
    second = cl_run(["-m", "seed=1,2", *TINY, f"hydra.sweep.dir={sweep_dir}"], mnist_root)
    assert second.returncode != 0  # Hydra reports the refused job when the sweep ends
    assert "holds a complete result of another config (differs at: optimizer.lr)" in \
        second.stderr
    assert folder_bytes(old) == before
    done = [p for p in sweep_dir.iterdir() if p.is_dir() and p != old]
    assert len(done) == 1 and json.loads((done[0] / "summary.json").read_text())["status"] \
        == "complete"


def test_job_folder_names():
    assert job_folder_name(["strategy=naive", "seed=1"]) == "strategy=naive,seed=1"
    assert job_folder_name(["benchmark.x=a/b"]) == "benchmark.x=a_b"  # no subfolder
    assert job_folder_name([], fallback="rotated_mnist_naive_seed1") == "rotated_mnist_naive_seed1"
    assert job_folder_name(["progress=false"], fallback="fb") == "fb"  # only neutral keys
    long_a, long_b = "k=" + "a" * 300, "k=" + "a" * 299 + "b"
    name_a, name_b = job_folder_name([long_a]), job_folder_name([long_b])
    assert len(name_a.encode()) <= MAX_NAME and name_a != name_b
    assert name_a == job_folder_name([long_a])  # the same overrides, the same folder
    # the resume hint names such a folder in a form the shell and Hydra's grammar pass on
    assert override_arg("hydra.run.dir", "/s/seed=1,strategy=naive") == \
        "\"hydra.run.dir='/s/seed=1,strategy=naive'\""
    assert override_arg("hydra.run.dir", "/s/r1") == "hydra.run.dir=/s/r1"
    # what Hydra makes of conf/config.yaml
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["seed=2", "strategy=mcsgd", "progress=false",
                                           "force=true", "data.root=/d/x"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert OmegaConf.select(cfg, "hydra.sweep.subdir") == "strategy=mcsgd,seed=2"


def test_summarize_lists_interrupted_and_running_runs(tmp_path, capsys):
    root = tmp_path / "runs[a]"
    make_run(root, "done", "naive", 1, [[0.9, 0.1], [0.5, 0.7]], avg=0.6)
    stopped = make_run(root, "stopped", "naive", 2, [[0.9, 0.1]], avg=0.6, status="interrupted")
    data = json.loads((stopped / "summary.json").read_text())
    data["error"] = "RunInterrupted: interrupted by SIGTERM after 1 finished task(s)"
    (stopped / "summary.json").write_text(json.dumps(data))
    (stopped / rf.RESUME_FILE).write_bytes(b"state")
    alive = make_run(root, "alive", "naive", 3, [[0.9, 0.1]], avg=0.6, status="running")
    data = json.loads((alive / "summary.json").read_text())
    # this test's parent process stands for a run going on elsewhere on this host
    data.update(pid=os.getppid(), host=socket.gethostname(), pid_start=None)
    (alive / "summary.json").write_text(json.dumps(data))
    assert S.main([str(root), f"out={tmp_path / 'out'}", "plots=false"]) == 0
    printed = capsys.readouterr().out
    assert "2 runs not included: 1 interrupted, 1 running" in printed
    assert str(root) in printed  # the brackets of the path survive
    reasons = {r.path.name: (r.status, r.reason) for r in map(S.read_run, (stopped, alive))}
    assert reasons["stopped"] == ("interrupted", "RunInterrupted: interrupted by SIGTERM after 1 "
                                  "finished task(s); 1 of 2 tasks in accuracy_matrix.csv; the "
                                  "same command resumes it")
    assert reasons["alive"][0] == "running" and f"process {os.getppid()}" in reasons["alive"][1]
