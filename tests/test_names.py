"""Sweep job folder names (issue 34, item 1): they lead with what differs between the sweep's
jobs, leave out result-neutral keys, stay unique, and a folder named as before is still used."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

from cl_runner.results.names import (
    MAX_NAME,
    is_result_neutral,
    job_folder_name,
    legacy_job_folder_name,
)
from cl_runner.sweep import swept_keys

#: `make sweep`'s constant overrides (the names were `...,see~12cc20d9` before)
MAKE_SWEEP = ["benchmark=rotated_mnist", "benchmark.num_tasks=3",
              "benchmark.train_samples_per_task=10000", "hardware.num_threads=1", "progress=false"]


def test_result_neutral_keys_are_declared_once():
    for key in ("hardware.num_threads", "hardware", "eval.every_steps", "progress", "data.root",
                "logger.mode", "checkpoints.enabled", "probes", "hparams_search"):
        assert is_result_neutral(key), key
    for key in ("strategy", "strategy.lmc_lr", "seed", "optimizer.lr", "benchmark.num_tasks",
                "hardwares", "evaluation"):
        assert not is_result_neutral(key), key


def test_make_sweep_names_lead_with_strategy_and_seed_and_leave_out_neutral_keys():
    swept = " ".join(swept_keys(["strategy=naive,mcsgd", "seed=1,2", *MAKE_SWEEP]))
    assert swept == "seed strategy"
    names = {}
    for strategy, seed in itertools.product(("naive", "mcsgd"), (1, 2)):
        overrides = [f"strategy={strategy}", f"seed={seed}", *MAKE_SWEEP]
        name = job_folder_name(overrides, swept)
        assert name.startswith(f"strategy={strategy},seed={seed},"), name
        assert "hardware" not in name and "progress" not in name and "~" not in name
        assert len(name.encode()) <= MAX_NAME
        # the same job named the same whatever the order of the command line
        assert job_folder_name(list(reversed(overrides)), swept) == name
        names[(strategy, seed)] = name
    assert len(set(names.values())) == 4
    assert names[("naive", 1)] == ("strategy=naive,seed=1,benchmark=rotated_mnist,"
                                   "benchmark.num_tasks=3,benchmark.train_samples_per_task=10000")


def test_swept_values_lead_and_stay_when_the_name_is_cut():
    constants = [f"benchmark.option_{i}=value_{i}" for i in range(12)]  # 240 bytes of constants
    # an Optuna search space (hydra.sweeper.params) and a swept neutral key (thread count)
    swept = " ".join(swept_keys(["hardware.num_threads=1,2", *constants],
                                ["optimizer.lr", "strategy.lmc_lr"]))
    assert swept == "hardware.num_threads optimizer.lr strategy.lmc_lr"
    names = set()
    for threads, lr in itertools.product((1, 2), (0.0123456789, 0.0123456788)):
        overrides = [*constants, f"optimizer.lr={lr}", "strategy.lmc_lr=0.05", "strategy=mcsgd",
                     f"hardware.num_threads={threads}", "seed=3"]
        name = job_folder_name(overrides, swept)
        assert name.startswith(f"hardware.num_threads={threads},optimizer.lr={lr},"
                               "strategy.lmc_lr=0.05,strategy=mcsgd,seed=3,benchmark."), name
        assert len(name.encode()) == MAX_NAME and name[-9] == "~"  # cut: the constants' tail
        names.add(name)
    assert len(names) == 4  # unique though cut


def test_a_folder_named_as_before_is_used_until_a_new_one_exists(tmp_path):
    overrides = ["strategy=naive", "seed=1", *MAKE_SWEEP]
    # Hydra's override_dirname of this job (conf/config.yaml excludes progress), cut as before
    dirname = ",".join(sorted(o for o in overrides if not o.startswith("progress")))
    legacy = legacy_job_folder_name(dirname, "fb")
    assert legacy == ("benchmark.num_tasks=3,benchmark.train_samples_per_task=10000,"
                      "benchmark=rotated_mnist,hardware.num_threads=1,see~7b4c5633")  # as before
    new = job_folder_name(overrides, "seed strategy", "fb", tmp_path, dirname)
    assert new.startswith("strategy=naive,seed=1,")
    (tmp_path / legacy).mkdir()
    assert job_folder_name(overrides, "seed strategy", "fb", tmp_path, dirname) == legacy
    (tmp_path / new).mkdir()  # both: the new name wins
    assert job_folder_name(overrides, "seed strategy", "fb", tmp_path, dirname) == new


def test_a_relaunched_sweep_finds_the_folder_of_the_former_naming(tmp_path, mnist_root):
    """A job's result in a folder named as Hydra's override_dirname named it is skipped on
    relaunch (not run again in a new folder); the new job's folder leads with the seed."""
    env = dict(os.environ, CL_RUNNER_DATA=str(mnist_root), HYDRA_FULL_ERROR="0")
    tiny = ["strategy=naive", "benchmark.num_tasks=2", "benchmark.train_samples_per_task=200",
            "progress=false", "hardware.num_threads=1"]
    sweep = tmp_path / "sweep"
    old = sweep / ("benchmark.num_tasks=2,benchmark.train_samples_per_task=200,"
                   "hardware.num_threads=1,seed=1,strategy=naive")  # the former name
    first = subprocess.run([sys.executable, "-m", "cl_runner", *tiny, "seed=1",
                            f"hydra.run.dir='{old}'"], capture_output=True, text=True,
                           timeout=300, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (old / "summary.json").read_bytes()
    again = subprocess.run([sys.executable, "-m", "cl_runner", "-m", *tiny, "seed=1,2",
                            f"hydra.sweep.dir={sweep}"], capture_output=True, text=True,
                           timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"skipped: {old}" in again.stdout + again.stderr
    assert (old / "summary.json").read_bytes() == before
    folders = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert folders == [old.name, "seed=2,strategy=naive,benchmark.num_tasks=2,"
                                 "benchmark.train_samples_per_task=200"]
    record = json.loads((sweep / folders[1] / "summary.json").read_text())
    assert record["status"] == "complete" and record["seed"] == 2
