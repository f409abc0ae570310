"""A result or resume state written before a config key existed still belongs to the config
that has the key at its default: a relaunched sweep skips the finished run and resumes the
unfinished one, instead of refusing them as another config (missing keys are filled from the
schema defaults, :func:`cl_runner.config.fill_schema_defaults`)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from cl_runner import run as api_run
from cl_runner.experiment import config_dict
from cl_runner.results.run_folder import (
    RunFolderError,
    check_run_folder,
    comparable_config,
    complete_result,
)
from cl_runner.resume import FORMAT, RESUME_FILE, ResumeMismatchError, read_resume_state
from tests.conftest import compose_run

#: (overrides, a key added after results were first stored); the first three were missing
#: from the hand-kept list this replaced (ADDED_GROUP_KEY_DEFAULTS), the others were in it
ADDED_LATER = [
    (["strategy=naive"], "benchmark.max_steps_per_task"),
    (["strategy=supsup"], "strategy.inference_shuffle"),
    (["strategy=mcsgd"], "strategy.lmc_full_batch"),
    (["benchmark=permuted_mnist"], "benchmark.permute_first_task"),
    (["strategy=supsup"], "model.mask_rule"),
    (["strategy=naive"], "probe"),
    (["strategy=naive"], "eval.subset_size"),
    (["strategy=naive"], "eval.future_tasks"),
    (["strategy=naive"], "benchmark.train_augmentation"),
    (["strategy=naive"], "model.init"),
    (["strategy=icarl"], "strategy.units"),
    (["strategy=icarl"], "strategy.distill_temperature"),
    (["strategy=lwf"], "strategy.distill_classes"),
]


def without(config: dict, dotted: str) -> dict:
    """``config`` as a version of cl_runner before ``dotted`` existed wrote it."""
    old = copy.deepcopy(config)
    *parents, last = dotted.split(".")
    node = old
    for key in parents:
        node = node[key]
    del node[last]
    return old


def write_complete(folder, config: dict) -> bytes:
    """A complete result of ``config`` (a whole T x T matrix, as a finished run leaves it)."""
    folder.mkdir(parents=True, exist_ok=True)
    tasks = config["benchmark"]["num_tasks"]
    header = ",".join(["train_task"] + [f"task_{j}" for j in range(1, tasks + 1)])
    rows = [",".join([f"after_task_{i}"] + ["0.5"] * tasks) for i in range(1, tasks + 1)]
    (folder / "accuracy_matrix.csv").write_text("\n".join([header, *rows]) + "\n")
    text = json.dumps({"status": "complete", "config": config, "average_accuracy": 0.5,
                       "seed": config["seed"], "num_tasks": tasks})
    (folder / "summary.json").write_text(text)
    return text.encode()


@pytest.mark.parametrize(("overrides", "key"), ADDED_LATER, ids=[k for _, k in ADDED_LATER])
def test_a_result_written_before_a_key_existed_is_skipped_not_refused(tmp_path, overrides, key):
    config = config_dict(compose_run(overrides))
    before = write_complete(tmp_path, without(config, key))
    done = check_run_folder(tmp_path, config)  # the relaunch: refused on the old code
    assert done is not None and done["status"] == "complete"
    assert complete_result(tmp_path, config) is not None
    assert (tmp_path / "summary.json").read_bytes() == before


def test_a_missing_key_means_its_default_not_any_value(tmp_path):
    config = config_dict(compose_run(["strategy=mcsgd"]))
    write_complete(tmp_path, without(config, "strategy.lmc_full_batch"))
    changed = copy.deepcopy(config)
    changed["strategy"]["lmc_full_batch"] = True
    with pytest.raises(RunFolderError, match="strategy.lmc_full_batch"):
        check_run_folder(tmp_path, changed)
    stored_other = copy.deepcopy(config)
    stored_other["benchmark"]["max_steps_per_task"] = 5  # stored, not at its default
    write_complete(tmp_path, stored_other)
    with pytest.raises(RunFolderError, match="benchmark.max_steps_per_task"):
        check_run_folder(tmp_path, config)


@pytest.mark.parametrize(("overrides", "key"), ADDED_LATER[:3], ids=[k for _, k in ADDED_LATER[:3]])
def test_a_resume_state_written_before_a_key_existed_resumes(tmp_path, overrides, key):
    config = config_dict(compose_run(overrides))
    torch.save({"format": FORMAT, "config": without(config, key), "task": 1}, tmp_path / RESUME_FILE)
    state = read_resume_state(tmp_path, comparable_config(config), "cpu")
    assert state["task"] == 1
    changed = copy.deepcopy(config)
    *parents, last = key.split(".")
    node = changed
    for part in parents:
        node = node[part]
    node[last] = 7 if last == "max_steps_per_task" else True
    with pytest.raises(ResumeMismatchError, match=last):
        read_resume_state(tmp_path, comparable_config(changed), "cpu")


def test_a_relaunch_skips_a_real_result_stored_before_the_keys(tmp_path, mnist_small_test_set):
    """A real run, its summary.json rewritten as before max_steps_per_task, probe and eval
    existed; running the same overrides again returns it without running (old code: refused)."""
    overrides = ["strategy=naive", "benchmark.num_tasks=2", "benchmark.train_samples_per_task=200",
                 "progress=false", "hardware.num_threads=1"]
    first = api_run(overrides, out_dir=tmp_path)
    assert not first.skipped
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("benchmark.max_steps_per_task", "probe", "eval"):
        summary["config"] = without(summary["config"], key)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    again = api_run(overrides, out_dir=tmp_path)
    assert again.skipped
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if not k.endswith(".log")} == {
        k: v for k, v in before.items() if not k.endswith(".log")}
