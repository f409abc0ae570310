"""``cl-run -m`` sweeps through Hydra's launchers: one folder per job, relaunch skips complete
jobs, a failing job is recorded and the others run, joblib runs jobs in parallel processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from cl_runner import summarize as S
from cl_runner.cli import CONF_DIR
from cl_runner.results.run_folder import comparable_config, complete_result
from cl_runner.sweep import record_failure

TINY = ["benchmark.num_tasks=2", "benchmark.train_samples_per_task=500", "progress=false",
        "hardware.num_threads=1"]


def cl_run(args: list[str], mnist_root: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, CL_RUNNER_DATA=str(mnist_root), HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "cl_runner", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def job_name(*swept: str) -> str:
    """The folder of the sweep job with these swept overrides (strategy first, then seed) and
    TINY's: the swept values lead, the result-neutral hardware.num_threads is left out."""
    return ",".join([*swept, "benchmark.num_tasks=2", "benchmark.train_samples_per_task=500"])


def job_folders(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name != "summary")


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "summary.json").read_text()) for p in job_folders(sweep_dir)}


@pytest.fixture(scope="module")
def sweep_2x2(tmp_path_factory, mnist_root) -> Path:
    """2 strategies x 2 seeds, tiny, default (sequential) launcher."""
    sweep_dir = tmp_path_factory.mktemp("sweeps") / "grid"
    proc = cl_run(["-m", "strategy=naive,mcsgd", "seed=1,2", *TINY,
                   f"hydra.sweep.dir={sweep_dir}"], mnist_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


@pytest.mark.slow
def test_multirun_writes_one_folder_per_job_and_summarizes(sweep_2x2, tmp_path):
    folders = job_folders(sweep_2x2)
    assert [p.name for p in folders] == [  # named by the job's overrides, not its number
        job_name("strategy=mcsgd", "seed=1"), job_name("strategy=mcsgd", "seed=2"),
        job_name("strategy=naive", "seed=1"), job_name("strategy=naive", "seed=2")]
    for folder in folders:
        for name in ("accuracy_matrix.csv", "metrics.csv", "summary.json", ".hydra/config.yaml"):
            assert (folder / name).is_file(), folder / name
    assert all(s["status"] == "complete" for s in summaries(sweep_2x2).values())
    summary = S.summarize([sweep_2x2], out=tmp_path / "summary", plots=False)
    assert [g.values for g in summary.groups] == [("rotated_mnist", "mcsgd"),
                                                  ("rotated_mnist", "naive")]
    assert [len(g.runs) for g in summary.groups] == [2, 2] and not summary.excluded
    by_strategy = {s["strategy"]: [] for s in summaries(sweep_2x2).values()}
    for s in summaries(sweep_2x2).values():
        by_strategy[s["strategy"]].append(s["average_accuracy"])
    acc = summary.table[summary.table.metric == "average_accuracy"].set_index("strategy")
    for strategy, values in by_strategy.items():
        assert acc.loc[strategy, "mean"] == pytest.approx(sum(values) / 2)
        assert acc.loc[strategy, "std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    md_rows = [ln for ln in (tmp_path / "summary" / "summary.md").read_text().splitlines()
               if ln.startswith("|")]
    assert len(md_rows) == 2 + 2  # header, separator, one row per strategy


@pytest.mark.slow
def test_relaunch_skips_complete_jobs_and_force_reruns(sweep_2x2, mnist_root):
    before = summaries(sweep_2x2)
    proc = cl_run(["-m", "strategy=naive,mcsgd", "seed=1,2", *TINY,
                   f"hydra.sweep.dir={sweep_2x2}"], mnist_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("skipped:") == 4
    assert "average accuracy" not in proc.stdout  # no run table: nothing trained
    assert summaries(sweep_2x2) == before          # the results were not rewritten
    # force=true re-runs (here the first job only), in the same folder
    first = sweep_2x2 / job_name("strategy=naive", "seed=1")
    proc = cl_run(["strategy=naive", "seed=1", *TINY, "force=true", f"hydra.run.dir='{first}'"],
                  mnist_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped:" not in proc.stdout + proc.stderr and "average accuracy" in proc.stdout
    again = json.loads((first / "summary.json").read_text())
    assert again["status"] == "complete" and again["config"]["force"] is True
    # seeds are deterministic on CPU: the re-run gives the same matrix
    assert again["average_accuracy"] == before[first.name]["average_accuracy"]


@pytest.mark.slow
def test_a_job_refused_for_its_value_leaves_no_record_and_the_others_complete(tmp_path,
                                                                              mnist_root):
    sweep_dir = tmp_path / "fail"
    # job 1 has an invalid thread count: refused inside the job, after Hydra launched it, but
    # before the run started (issue 30: a value error leaves no failed run behind)
    proc = cl_run(["-m", "strategy=naive", "seed=1", "hardware.num_threads=1,0",
                   "benchmark.num_tasks=2", "benchmark.train_samples_per_task=500",
                   "progress=false", f"hydra.sweep.dir={sweep_dir}"], mnist_root)
    assert proc.returncode != 0  # Hydra reports the failed job when the sweep ends
    assert "hardware.num_threads must be >= 1" in proc.stderr
    assert "left as it was" in proc.stdout + proc.stderr  # not "recorded in": nothing written
    # the swept thread count leads the names (result-neutral, but what differs here)
    name = "hardware.num_threads={},strategy=naive,seed=1,benchmark.num_tasks=2," \
           "benchmark.train_samples_per_task=500"
    ok = json.loads((sweep_dir / name.format(1) / "summary.json").read_text())
    assert ok["status"] == "complete"
    bad = sweep_dir / name.format(0)
    assert not (bad / "summary.json").exists() and not (bad / ".hydra").exists()
    summary = S.summarize([sweep_dir], out=tmp_path / "summary", plots=False)
    assert len(summary.groups) == 1 and len(summary.groups[0].runs) == 1
    assert summary.excluded == []


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_in_parallel_processes(sweep_2x2, tmp_path, mnist_root):
    sweep_dir = tmp_path / "joblib"
    proc = cl_run(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "strategy=naive",
                   "seed=1,2", *TINY, f"hydra.sweep.dir={sweep_dir}"], mnist_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    runs = summaries(sweep_dir)
    assert sorted(runs) == [job_name("seed=1", "strategy=naive"), job_name("seed=2", "strategy=naive")]
    assert all(r["status"] == "complete" for r in runs.values())
    # the same jobs as the sequential sweep give the same numbers
    basic = summaries(sweep_2x2)  # named with the strategy first: it was swept there
    for seed in (1, 2):
        name, there = job_name(f"seed={seed}", "strategy=naive"), \
            job_name("strategy=naive", f"seed={seed}")
        assert runs[name]["average_accuracy"] == basic[there]["average_accuracy"]
        pd.testing.assert_frame_equal(
            pd.read_csv(sweep_dir / name / "accuracy_matrix.csv"),
            pd.read_csv(sweep_2x2 / there / "accuracy_matrix.csv"))


def session_processes(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``, read from ``/proc``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_joblib_workers_leave_after_their_job_when_the_sweep_is_killed(tmp_path, mnist_root):
    # kill -9 of cl-run -m: each loky worker finishes its job, then leaves (it used to block
    # for ever writing its result into a pipe nobody reads)
    sweep_dir = tmp_path / "orphans"
    env = dict(os.environ, CL_RUNNER_DATA=str(mnist_root))
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2",
            "benchmark.num_tasks=3", "benchmark.train_samples_per_task=2000", "progress=false",
            "hardware.num_threads=1", f"hydra.sweep.dir={sweep_dir}"]
    parent = subprocess.Popen([sys.executable, "-m", "cl_runner", *args], env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    sid = parent.pid
    try:
        deadline = time.monotonic() + 240
        while len(list(sweep_dir.glob("*/.hydra/config.yaml"))) < 2:  # both jobs started
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert len(session_processes(sid)) >= 3  # the sweep and its two workers
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 90
        while session_processes(sid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = session_processes(sid)
    finally:
        for pid in session_processes(sid):  # only processes this test started
            os.kill(pid, signal.SIGKILL)
    assert left == []
    runs = summaries(sweep_dir)
    assert len(runs) == 2 and all(r["status"] == "complete" for r in runs.values())


@pytest.mark.parametrize("launcher, target", [
    ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("submitit_slurm", "hydra_plugins.cl_runner_launchers.SlurmLauncher"),  # the plugin's, one-line reports
    ("submitit_local", "hydra_plugins.cl_runner_launchers.LocalLauncher"),
])
def test_launcher_configs_compose(launcher, target):
    if launcher.startswith("submitit"):
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                            reason="the slurm extra: pip install -e '.[slurm]'")
    overrides = [f"hydra/launcher={launcher}", "strategy=naive", "seed=1"]
    if launcher == "submitit_slurm":
        overrides += ["hydra.launcher.timeout_min=30", "hydra.launcher.cpus_per_task=2"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target
    if launcher == "submitit_slurm":
        assert cfg.hydra.launcher.timeout_min == 30 and cfg.hydra.launcher.cpus_per_task == 2


def test_complete_result_compares_the_resolved_config(tmp_path):
    cfg = {"seed": 1, "benchmark": {"name": "b", "angles": (0.0, 9.0)}, "progress": True,
           "force": False, "data": {"root": "/a"}}
    assert complete_result(tmp_path, cfg) is None  # nothing there
    stored = {"seed": 1, "benchmark": {"name": "b", "angles": [0.0, 9.0]}, "progress": False,
              "force": True, "data": {"root": "/elsewhere"}}
    (tmp_path / "summary.json").write_text(json.dumps({"status": "complete", "config": stored,
                                                       "num_tasks": 1, "average_accuracy": 0.5}))
    assert complete_result(tmp_path, cfg) is None  # no accuracy matrix
    (tmp_path / "accuracy_matrix.csv").write_text("train_task,task_1\nafter_task_1,0.5\n")
    assert complete_result(tmp_path, cfg)["status"] == "complete"  # progress/force/data ignored
    assert comparable_config(stored) == comparable_config(cfg)
    assert complete_result(tmp_path, {**cfg, "seed": 2}) is None   # another config
    # a failure never replaces a complete result (e.g. a later launch with a bad value)
    assert record_failure(tmp_path, ValueError("boom"), {"seed": 1}) is None
    assert complete_result(tmp_path, cfg)["status"] == "complete"
    (tmp_path / "accuracy_matrix.csv").unlink()  # not complete any more: recorded
    assert record_failure(tmp_path, ValueError("boom"), {"seed": 1}) == tmp_path / "summary.json"
    assert complete_result(tmp_path, cfg) is None                  # failed: run again
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["status"] == "failed" and data["error"] == "ValueError: boom" and data["seed"] == 1
