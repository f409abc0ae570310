"""The Python API (``from cl_runner import run``): the same composition, validation and run
folder rules as ``cl-run``, results returned as DataFrames read from the folder's files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cl_runner.errors import ConfigError, OverrideError
from cl_runner.results.run_folder import RunFolderError

#: 2 tasks of 300 real MNIST training images (1,000 test images: mnist_small_test_set)
OVERRIDES = ["benchmark.num_tasks=2", "benchmark.train_samples_per_task=300",
             "hardware=cpu", "hardware.num_threads=1", "progress=false"]


class CrashAfterTask(Exception):
    """Stands for a crash right after task 1's resume state was written."""


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the log, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".log"}


@pytest.mark.usefixtures("mnist_small_test_set")
def test_run_returns_the_folders_results_and_keeps_cl_runs_folder_rules(
        tmp_path, mnist_root, monkeypatch):
    from cl_runner import resume as resume_mod
    from cl_runner import run

    monkeypatch.setenv("CL_RUNNER_DATA", str(mnist_root))
    monkeypatch.chdir(tmp_path)  # the default folder is made under the working directory
    result = run(OVERRIDES)

    # a new folder named as cl-run names one: outputs/runs/DATE/TIME-US_BENCHMARK_STRATEGY_seedN
    folder = result.run_dir
    assert folder.parent.parent == tmp_path / "outputs" / "runs"
    assert folder.name.endswith("_rotated_mnist_naive_seed1") and not result.skipped
    # the returned tables are the folder's files
    assert result.accuracy_matrix.equals(pd.read_csv(folder / "accuracy_matrix.csv", index_col=0))
    assert result.metrics.equals(pd.read_csv(folder / "metrics.csv"))
    assert list(result.accuracy_matrix.index) == ["after_task_1", "after_task_2"]
    assert list(result.accuracy_matrix.columns) == ["task_1", "task_2"]
    summary = json.loads((folder / "summary.json").read_text())
    assert result.summary == summary and result.config == summary["config"]
    assert result.config["benchmark"]["train_samples_per_task"] == 300
    # average accuracy = mean of the last row; the tidy metrics hold the same numbers
    assert result.average_accuracy == pytest.approx(result.accuracy_matrix.iloc[-1].mean())
    tidy = result.metrics.set_index(["train_task", "eval_task"])["accuracy"]
    assert tidy[(2, 1)] == result.accuracy_matrix.loc["after_task_2", "task_1"]
    # Hydra's record, as cl-run writes it (cl-summarize reads the overrides from it)
    assert yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) == OVERRIDES
    assert yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())["seed"] == 1
    assert "task  2/2" in (folder / "api.log").read_text()

    # the same config into the same folder: skipped, the result returned, nothing rewritten
    before = folder_bytes(folder)
    again = run(OVERRIDES, out_dir=folder)
    assert again.skipped and again.accuracy_matrix.equals(result.accuracy_matrix)
    assert folder_bytes(folder) == before
    # another config: refused, as cl-run refuses it, the folder left as it was
    with pytest.raises(RunFolderError, match=r"differs at: seed\)"):
        run([*OVERRIDES, "seed=2"], out_dir=folder)
    assert folder_bytes(folder) == before

    # a run that crashed after task 1 resumes there when called again, ending as the
    # uninterrupted run (byte-identical accuracy matrix)
    crashed = tmp_path / "crashed"
    original = resume_mod.ResumeHook.after_evaluation

    def after_evaluation(self, done, res):
        original(self, done, res)
        if done == 1:
            raise CrashAfterTask

    monkeypatch.setattr(resume_mod.ResumeHook, "after_evaluation", after_evaluation)
    with pytest.raises(CrashAfterTask):
        run(OVERRIDES, out_dir=crashed)
    monkeypatch.setattr(resume_mod.ResumeHook, "after_evaluation", original)
    assert json.loads((crashed / "summary.json").read_text())["status"] == "failed"
    resumed = run(OVERRIDES, out_dir=str(crashed))
    assert resumed.summary["resumed_after_task"] == 1 and resumed.run_dir == crashed
    assert ((crashed / "accuracy_matrix.csv").read_bytes()
            == (folder / "accuracy_matrix.csv").read_bytes())


def test_bad_overrides_raise_before_anything_is_written(tmp_path, monkeypatch):
    from cl_runner import run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OverrideError, match=r"Key 'lmc_lrr' not in 'MCSGDConfig'"):
        run(["strategy=mcsgd", "strategy.lmc_lrr=0.1"])
    with pytest.raises(OverrideError, match=r"could not be converted to Integer"):
        run(["seed=abc"])
    with pytest.raises(OverrideError, match=r"Could not find 'strategy/mcsdg'"):
        run(["strategy=mcsdg"])
    with pytest.raises(OverrideError, match=r"Ambiguous value for argument 'seed=1,2'"):
        run(["seed=1,2"])  # a sweep: one call per value
    assert not (tmp_path / "outputs").exists()
    assert issubclass(OverrideError, ConfigError)
    # a well-formed override whose value is out of range: the schema's check, as in cl-run
    with pytest.raises(ConfigError, match="batch_size"):
        run(["benchmark.batch_size=0"], out_dir=tmp_path / "bad")


def test_import_cl_runner_is_cheap_and_run_comes_on_first_use():
    code = ("import sys, cl_runner\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'hydra', 'omegaconf', 'pandas', 'rich'}))\n"
            "from cl_runner import run, load_run, RunResult\n"
            "import cl_runner.api as api\n"
            "print(run is api.run, load_run is api.load_run, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out == ["[]", "True True False"]


def test_unknown_plus_keys_are_refused_and_a_string_of_overrides_is_accepted(
        tmp_path, mnist_small_test_set, monkeypatch):
    """Issue 34: ``+key=value`` added a key no schema knows and the run went on with it
    ignored; a string was split into its characters."""
    from cl_runner import run
    from cl_runner.api import compose_config

    monkeypatch.setenv("CL_RUNNER_DATA", str(mnist_small_test_set))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown config key: foo\. No schema"):
        run(["+foo=1", *OVERRIDES])
    with pytest.raises(ConfigError, match=r"strategy\.lmc_lrr \(did you mean strategy\.lmc_lr\?\)"):
        run(["strategy=mcsgd", "+strategy.lmc_lrr=0.1", *OVERRIDES], out_dir=tmp_path / "typo")
    assert list(tmp_path.iterdir()) == []  # no run folder, no log: nothing written
    # a config group added with + still composes and resolves (a paper's preset)
    from omegaconf import open_dict

    from cl_runner.dispatch import resolve
    cfg = compose_config(["+experiment=rotated_mnist_mcsgd"])
    with open_dict(cfg):
        del cfg["hydra"]
    assert resolve(cfg).strategy.name == "mcsgd"
    # one string, split as a shell splits a command line
    result = run(" ".join(["strategy=naive", "seed=2", *OVERRIDES]), out_dir=tmp_path / "s")
    assert result.summary["strategy"] == "naive" and result.summary["seed"] == 2
