"""Hyperparameter search (issue 15): the validation split never hands out test data, the
objective (one seed, a mean over seeds, a diverged run's score), and a real 3-trial Optuna
search with a persistent SQLite study that a second launch continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from cl_runner.errors import ConfigError, TrainingDivergedError
from cl_runner.objective import OBJECTIVE_FILE, run_objective
from tests.conftest import REPO, compose_cfg, compose_run

SHORT = ["benchmark.num_tasks=2", "benchmark.train_samples_per_task=300", "progress=false",
         "hardware=cpu", "hardware.num_threads=1"]


@pytest.mark.usefixtures("mnist_small_test_set")
def test_validation_split_is_held_out_of_training_and_never_the_test_set(mnist_root):
    from cl_runner import dispatch

    run = compose_run(SHORT + [f"data.root={mnist_root}", "benchmark.validation_fraction=0.2"])
    plain = compose_run(SHORT + [f"data.root={mnist_root}"])
    split = dispatch.build_benchmark(run, torch.device("cpu"))
    whole = dispatch.build_benchmark(plain, torch.device("cpu"))
    for task in (1, 2):
        train_x, train_y = split.train_data(task)
        val_x, val_y = split.test_data(task)
        all_x, all_y = whole.train_data(task)
        assert (len(train_y), len(val_y)) == (240, 60)  # floor(0.2 * 300) held out
        # together they are the task's training set, each example once
        rows = {tuple(r) for r in all_x.flatten(1).tolist()}
        assert {tuple(r) for r in torch.cat([train_x, val_x]).flatten(1).tolist()} == rows
        assert not {tuple(r) for r in val_x.flatten(1).tolist()} & \
            {tuple(r) for r in train_x.flatten(1).tolist()}
        test_rows = {tuple(r) for r in whole.test_data(task)[0].flatten(1).tolist()}
        assert not {tuple(r) for r in val_x.flatten(1).tolist()} & test_rows
    again = dispatch.build_benchmark(run, torch.device("cpu"))
    assert torch.equal(again.test_data(2)[1], split.test_data(2)[1])  # fixed by the seed


def test_validation_fraction_out_of_range_is_refused_before_data_are_read(tmp_path):
    from cl_runner.experiment import run_experiment

    with pytest.raises(ConfigError, match="validation_fraction"):
        run_experiment(compose_run(SHORT + ["data.root=/nonexistent",
                                            "benchmark.validation_fraction=1.0"]), tmp_path)


@pytest.mark.usefixtures("mnist_small_test_set")
def test_objective_is_the_mean_over_seeds_on_validation_data(tmp_path, mnist_root):
    cfg = compose_cfg(SHORT + [f"data.root={mnist_root}", "benchmark.validation_fraction=0.1",
                               "objective.seeds=[1,2]"])
    scored = run_objective(cfg, tmp_path, None)
    values = [json.loads((tmp_path / f"seed{s}" / "summary.json").read_text())
              for s in (1, 2)]
    assert [v["seed"] for v in values] == [1, 2]
    assert all(v["evaluated_on"] == "validation" for v in values)
    assert scored.value == pytest.approx((values[0]["average_accuracy"]
                                          + values[1]["average_accuracy"]) / 2)
    record = json.loads((tmp_path / OBJECTIVE_FILE).read_text())
    assert record["objective"] == pytest.approx(scored.value)
    assert record["evaluated_on"] == "validation" and record["diverged_seeds"] == []


@pytest.mark.usefixtures("mnist_small_test_set")
def test_a_diverged_run_scores_the_diverged_value_or_fails(tmp_path, mnist_root):
    diverging = SHORT + [f"data.root={mnist_root}", "optimizer.lr=1e12"]
    with pytest.raises(TrainingDivergedError):
        run_objective(compose_cfg(diverging), tmp_path / "plain", None)
    scored = run_objective(compose_cfg(diverging + ["objective.diverged_value=0.0"]),
                           tmp_path / "scored", None)
    assert scored.value == 0.0 and scored.diverged == [1]
    summary = json.loads((tmp_path / "scored" / "summary.json").read_text())
    assert summary["status"] == "failed"  # the run itself is still recorded as it was


def optuna_search(sweep_dir, storage, trials: int, mnist_root) -> subprocess.CompletedProcess:
    env = {**os.environ, "CL_RUNNER_DATA": str(mnist_root)}
    return subprocess.run(
        [sys.executable, "-m", "cl_runner", "hparams_search=rotated_mnist_mcsgd",
         f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.storage={storage}",
         f"hydra.sweep.dir={sweep_dir}", "benchmark.num_tasks=2",
         "benchmark.train_samples_per_task=200", "hardware.num_threads=1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.filterwarnings("ignore:Deprecated API features detected")  # optuna 2.10 on SQLAlchemy 1.4
def test_a_three_trial_optuna_search_runs_and_a_second_launch_continues_the_study(tmp_path,
                                                                                mnist_root):
    import optuna

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first = optuna_search(tmp_path / "search", storage, 3, mnist_root)
    assert first.returncode == 0, first.stderr[-3000:]
    # issue 34 item 11: no alembic log lines at start; each trial's table says where its
    # accuracy was measured; a table of all trials at the end, best first, rounded
    assert "alembic" not in first.stdout + first.stderr
    assert first.stdout.count("seed 1; accuracy on the validation split") == 3
    table = first.stdout[first.stdout.index("all 3 trials of"):]
    assert "avg. accuracy (%) on validation" in table
    scores = [float(line.split("│")[-3]) for line in table.splitlines()
              if line.startswith("│")]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    best = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "search").glob("*/summary.json")]
    assert len(jobs) == 3 and all(j["evaluated_on"] == "validation" for j in jobs)
    assert best["best_value"] == pytest.approx(max(j["average_accuracy"] for j in jobs))
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.gamma", "strategy.lmc_lr",
                                        "strategy.beta"}
    # the trials' values were used: each job's config holds its sampled learning rate
    assert len({j["config"]["optimizer"]["lr"] for j in jobs}) == 3
    # trial folders lead with the search space's values (not the fixed overrides), no hardware
    for path in (tmp_path / "search").glob("*/summary.json"):
        name, config = path.parent.name, json.loads(path.read_text())["config"]
        assert name.startswith(f"optimizer.gamma={config['optimizer']['gamma']},optimizer.lr="
                               f"{config['optimizer']['lr']},strategy.beta="), name
        assert "hardware" not in name

    second = optuna_search(tmp_path / "search", storage, 2, mnist_root)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="rotated_mnist_mcsgd", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5
    assert len(list((tmp_path / "search").glob("*/summary.json"))) == 5  # nothing replaced


def test_trials_table_best_first_rounded_with_a_diverged_trial(tmp_path):
    from rich.console import Console

    from cl_runner.objective import trials_frame, trials_table

    def job(name, lr, status, acc, started, seeds=None):
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            [f"optimizer.lr={lr}", "hparams_search=rotated_mnist_er"]))
        (folder / "summary.json").write_text(json.dumps({
            "status": status, "average_accuracy": acc, "evaluated_on": "validation",
            "started_at": started, "config": {"objective": {"diverged_value": 0.0}}}))
        if seeds:
            (folder / OBJECTIVE_FILE).write_text(json.dumps(
                {"objective": seeds, "evaluated_on": "validation"}))

    job("a", 0.012345678, "complete", 0.5, "2026-12-06T10:00:00")
    job("b", 3.0, "failed", None, "2026-12-06T10:01:00")  # diverged: scores diverged_value
    job("c", 0.1, "complete", 0.25, "2026-12-06T10:02:00", seeds=0.875)  # mean over seeds
    frame = trials_frame(tmp_path, ["optimizer.lr"])
    assert frame["trial"].tolist() == [3, 1, 2]  # best first; numbered in start order
    assert frame["objective"].tolist() == [0.875, 0.5, 0.0]
    out = Console(width=200)
    with out.capture() as captured:
        out.print(trials_table(frame, "all trials"))
    text = captured.get()
    assert "0.01235" in text and "87.50" in text and "0.00" in text and "failed" in text
    assert "on validation" in text


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "conf" / "hparams_search")
                                          .glob("*.yaml")))
def test_every_preset_composes_and_scores_on_validation_data(preset):
    run = compose_run([f"hparams_search={preset}"])
    assert run.benchmark.validation_fraction > 0  # never tuned on the test sets
    assert run.objective.diverged_value is not None
    benchmark, strategy = preset.rsplit("_", 1)
    assert (run.benchmark.name, run.strategy.name) == (benchmark, strategy)
