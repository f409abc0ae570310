"""Checkpoints, the gradient-conflict probe and ``cl-analyze`` on tiny real-MNIST runs."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cl_runner import analyze
from cl_runner.analysis import lmc
from cl_runner.analysis.hessian import flat, lie_bracket, model_objective
from cl_runner.analysis.probes import COLUMNS, gradient_conflict
from cl_runner.analysis.runs import AnalysisError, build_components, load_solutions
from cl_runner.config import RunConfig
from cl_runner.experiment import config_dict, run_experiment
from cl_runner.results.checkpoints import load_state, read_index
from cl_runner.results.run_folder import comparable_config
from tests.conftest import compose_cfg, compose_run, use_small_mnist_test_set

TINY = ["benchmark.num_tasks=2", "benchmark.train_samples_per_task=300", "progress=false",
        "hardware.num_threads=1", "seed=3"]


def tiny_run(out, strategy: str, *extra: str) -> None:
    run_experiment(compose_run([f"strategy={strategy}", *TINY, *extra]), out)


@pytest.fixture(scope="module", autouse=True)
def small_mnist_test_set():
    """The runs and their analyses in this module read 1,000 MNIST test images per task."""
    with pytest.MonkeyPatch.context() as patch:
        use_small_mnist_test_set(patch)
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_root):
    """Three 2-task runs of seed 3 with checkpoints: naive, multitask, MC-SGD (the last also
    with the gradient-conflict probe)."""
    root = tmp_path_factory.mktemp("lmc")
    torch.set_num_threads(1)
    tiny_run(root / "naive", "naive", "checkpoints.enabled=true", "model.dropout=0.2")
    tiny_run(root / "multitask", "multitask", "checkpoints.enabled=true")
    tiny_run(root / "mcsgd", "mcsgd", "checkpoints.enabled=true", "probes=[gradient_conflict]",
             "strategy.subset_size=100")
    return root


def test_checkpoints_written_with_index_and_shared_init(runs):
    index = read_index(runs / "mcsgd")
    assert list(index["name"]) == ["init", "w_hat_1", "w_bar_1", "w_hat_2", "w_bar_2"]
    assert (index["bytes"] > 4 * 269_322).all()  # float32 MLP 784-256-256-10
    assert sorted(read_index(runs / "multitask")["name"]) == ["init", "w_star_1", "w_star_2"]
    inits = [load_state(runs / r, "init") for r in ("naive", "multitask", "mcsgd")]
    for other in inits[1:]:  # same seed -> same initialization, whatever the strategy
        assert all(torch.equal(inits[0][k], v) for k, v in zip(inits[0], other.values(), strict=True))
    # w_bar_1 = w_hat_1 for MC-SGD; w_hat_2 (continual phase) != w_bar_2 (line phase)
    w = {n: load_state(runs / "mcsgd", n) for n in ("w_hat_1", "w_bar_1", "w_hat_2", "w_bar_2")}
    assert all(torch.equal(w["w_hat_1"][k], w["w_bar_1"][k]) for k in w["w_hat_1"])
    assert not all(torch.equal(w["w_hat_2"][k], w["w_bar_2"][k]) for k in w["w_hat_2"])


def test_no_checkpoints_or_diagnostics_by_default(tmp_path, mnist_root):
    run = compose_run(TINY)
    assert run.checkpoints.enabled is False and run.probes == []
    tiny_run(tmp_path, "naive")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "diagnostics.csv").exists()


def test_probe_typo_rejected_at_compose_time():
    with pytest.raises(Exception, match="gradient_confict"):
        compose_cfg(["probes=[gradient_confict]"])


def test_new_keys_keep_old_results_comparable():
    # a summary.json written before checkpoints/probes existed equals a default config now
    now = config_dict(RunConfig())
    old = {k: v for k, v in now.items() if k not in ("checkpoints", "probes", "probe", "eval")}
    assert comparable_config(old) == comparable_config(now)
    changed = dict(now, checkpoints={"enabled": True, "tasks": None})
    assert comparable_config(old) != comparable_config(changed)


def test_probe_rows_and_no_effect_on_training(runs, tmp_path):
    diag = pd.read_csv(runs / "mcsgd" / "diagnostics.csv")
    assert list(diag.columns) == COLUMNS
    assert list(zip(diag["task"], diag["point"], strict=True)) == [(2, "task_start"),
                                                                  (2, "task_end")]
    assert (diag["examples_a"] == 256).all() and (diag["examples_b"] == 256).all()
    assert diag[COLUMNS[5:]].map(math.isfinite).all().all()
    assert ((diag["grad_cosine"].abs() <= 1) & (diag["lie_bracket_norm"] > 0)).all()
    # the same run without the probe trains identically (dropout on: the global RNG matters)
    tiny_run(tmp_path, "mcsgd", "strategy.subset_size=100")
    assert pd.read_csv(tmp_path / "accuracy_matrix.csv").equals(
        pd.read_csv(runs / "mcsgd" / "accuracy_matrix.csv"))


def test_gradient_conflict_matches_direct_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    gen = torch.Generator().manual_seed(0)
    xa, xb = torch.randn(20, 4, generator=gen).double(), torch.randn(15, 4, generator=gen).double()
    ya, yb = torch.randint(0, 3, (20,), generator=gen), torch.randint(0, 3, (15,), generator=gen)
    row = gradient_conflict(model, (xa, ya, None), (xb, yb, None), lambda b: b)
    la = model_objective(model, xa, ya, to_input=lambda b: b)
    lb = model_objective(model, xb, yb, to_input=lambda b: b)
    params = tuple(p.detach() for p in model.parameters())
    ga, gb = flat(la.gradient(params)), flat(lb.gradient(params))
    assert row["grad_dot"] == pytest.approx(float(ga @ gb), rel=1e-5)
    assert row["grad_cosine"] == pytest.approx(float(ga @ gb / (ga.norm() * gb.norm())), rel=1e-5)
    assert row["grad_norm_sq_a"] == pytest.approx(float(ga @ ga), rel=1e-5)
    assert row["lie_bracket_norm"] == pytest.approx(
        float(flat(lie_bracket(la, lb, params)).norm()), rel=1e-5)
    assert model.training  # restored


@pytest.fixture(scope="module")
def analysis_parts(runs):
    solutions = load_solutions([runs / "mcsgd", runs / "naive", runs / "multitask"])
    benchmark, model = build_components(solutions)
    return solutions, benchmark, model


def test_interpolation_end_points_equal_the_runs_evaluation(runs, analysis_parts):
    solutions, benchmark, model = analysis_parts
    metrics = pd.read_csv(runs / "mcsgd" / "metrics.csv").set_index(["train_task", "eval_task"])
    evaluator = lmc.PointEvaluator(model, benchmark, task=1)
    curve = lmc.interpolate(evaluator, solutions.state("mcsgd/w_bar_1"),
                            solutions.state("mcsgd/w_bar_2"), points=5)
    assert list(curve["alpha"]) == [0, 0.25, 0.5, 0.75, 1]
    for alpha, train_task in ((0.0, 1), (1.0, 2)):
        at = curve[curve["alpha"] == alpha].iloc[0]
        assert at["loss"] == pytest.approx(metrics.loc[(train_task, 1), "loss"], rel=1e-5)
        assert at["accuracy"] == pytest.approx(metrics.loc[(train_task, 1), "accuracy"], abs=1e-9)


def test_interpolation_between_identical_weights_is_flat(analysis_parts):
    solutions, benchmark, model = analysis_parts
    state = solutions.state("multitask/w_star_2")
    curve = lmc.interpolate(lmc.PointEvaluator(model, benchmark, task=2, max_examples=500),
                            state, state, points=4)
    assert curve["loss"].nunique() == 1 and curve["accuracy"].nunique() == 1
    assert lmc.barrier(curve)["barrier"] == 0.0 and lmc.barrier(curve)["interior_bump"] == 0.0


def test_barrier_is_the_bump_above_the_straight_line_between_the_ends():
    """Issue 34 item 8: on a line whose loss falls monotonically the old figure (max minus the
    mean of the ends) read 0.35; the barrier is 0 there, and the height of a bump otherwise."""
    alpha = np.linspace(0, 1, 11)
    falling = pd.DataFrame({"alpha": alpha, "loss": 0.8 - 0.7 * alpha ** 0.5,
                            "accuracy": 0.5 + 0.4 * alpha})  # convex, monotone: 0.8 -> 0.1
    b = lmc.barrier(falling)
    assert b["barrier"] == 0.0
    assert b["max_minus_end_mean"] == pytest.approx(0.8 - 0.45)  # 0.35, the old "barrier"
    assert b["interior_bump"] == 0.0
    # a bump of 0.5 at alpha = 0.5 on the line from 0.2 to 0.4 (chord there: 0.3)
    bump = pd.DataFrame({"alpha": alpha, "loss": 0.2 + 0.2 * alpha + 0.5 * (alpha == 0.5),
                         "accuracy": 0.9 - 0.1 * (alpha == 0.5)})
    b = lmc.barrier(bump)
    assert b["barrier"] == pytest.approx(0.5)
    assert b["max_minus_end_mean"] == pytest.approx(0.8 - 0.3)
    assert b["interior_bump"] == pytest.approx(0.8 - 0.4)
    assert b["accuracy_drop"] == pytest.approx(0.1)


def test_solution_names_resolve(analysis_parts):
    solutions, _, _ = analysis_parts
    assert solutions.qualified("w_star_2") == "multitask/w_star_2"
    assert solutions.shared_init() and solutions.all_names()[0] == "mcsgd/init"
    with pytest.raises(AnalysisError, match="LABEL/w_hat_1"):
        solutions.resolve("w_hat_1")  # naive and mcsgd both have it
    with pytest.raises(AnalysisError, match="no solution"):
        solutions.resolve("mcsgd/w_star_1")


def test_runs_of_other_seeds_are_refused(runs, tmp_path, mnist_root):
    tiny_run(tmp_path, "naive", "checkpoints.enabled=true", "seed=4")
    with pytest.raises(AnalysisError, match="seed"):
        load_solutions([runs / "naive", tmp_path])
    shutil.rmtree(tmp_path / "checkpoints")
    with pytest.raises(AnalysisError, match="no checkpoints"):
        load_solutions([tmp_path])


def test_cl_analyze_interpolate_and_distances_write_csv_and_plots(runs, tmp_path):
    paths = [str(runs / r) for r in ("mcsgd", "naive", "multitask")]
    out = tmp_path / "analysis"
    assert analyze.main(["interpolate", *paths, f"out={out}", "points=3", "max_examples=1000",
                         "t=[2]"]) == 0
    barriers = pd.read_csv(out / "barriers_task1.csv")
    assert list(barriers["comparison"]) == ["continual", "continual", "multitask", "mcsgd"]
    assert list(barriers["end"]) == ["mcsgd/w_hat_2", "naive/w_hat_2", "multitask/w_star_2",
                                     "mcsgd/w_bar_2"]
    assert list(barriers["start"])[2:] == ["mcsgd/w_hat_1"] * 2
    curves = pd.read_csv(out / "interpolate_task1.csv")
    assert len(curves) == 4 * 3
    for row in barriers.itertuples():
        path = curves[(curves["start"] == row.start) & (curves["end"] == row.end)]
        assert row.max_minus_end_mean == pytest.approx(
            path["loss"].max() - (path["loss"].iloc[0] + path["loss"].iloc[-1]) / 2)
        chord = path["loss"].iloc[0] + path["alpha"] * (path["loss"].iloc[-1]
                                                        - path["loss"].iloc[0])
        assert row.barrier == pytest.approx(max(0.0, (path["loss"] - chord).max()))
    assert (out / "interpolate_task1.png").stat().st_size > 0
    assert (out / "interpolate_task1.pdf").exists()

    assert analyze.main(["distances", *paths, f"out={out}"]) == 0
    dist = pd.read_csv(out / "distances.csv")
    names = list(dict.fromkeys(dist["a"]))
    assert names[0] == "mcsgd/init" and len(names) == 1 + 4 + 2 + 2
    matrix = dist.pivot(index="a", columns="b", values="distance")
    assert (matrix.to_numpy().diagonal() == 0).all()
    assert (matrix.to_numpy() - matrix.to_numpy().T).__abs__().max() < 1e-9
    assert matrix.loc["mcsgd/w_hat_1", "mcsgd/w_bar_1"] == 0
    assert (out / "distances.png").exists()


def test_cl_analyze_plane_and_curvature(runs, tmp_path):
    paths = [str(runs / r) for r in ("mcsgd", "naive", "multitask")]
    out = tmp_path / "analysis"
    assert analyze.main(["plane", *paths, f"out={out}", "grid=3", "max_examples=500"]) == 0
    grid = pd.read_csv(out / "plane_task1_t2.csv")
    assert len(grid) == 9 and grid["loss"].map(math.isfinite).all()
    points = pd.read_csv(out / "plane_points_task1_t2.csv").set_index("solution")
    assert points.loc["mcsgd/w_hat_1", ["x", "y"]].abs().max() < 1e-6  # the origin
    assert points["distance_to_plane"].iloc[:3].max() < 1e-3  # the three points span it
    assert points.loc["mcsgd/w_bar_2", "role"] == "projected"
    assert (out / "plane_task1_t2.png").exists()
    assert analyze.main(["curvature", *paths, f"out={out}", "k=2", "iterations=6", "batches=1",
                         "batch_size=64"]) == 0
    eigen = pd.read_csv(out / "curvature_eigen_mcsgd_w_hat_1_task1.csv")
    assert list(eigen["rank"]) == [1, 2] and eigen["eigenvalue"].is_monotonic_decreasing
    cosines = pd.read_csv(out / "curvature_cosines_mcsgd_w_hat_1_task1.csv")
    assert set(cosines["direction"].str.split(":").str[0]) == {"continual", "multitask", "mcsgd"}
    assert (cosines["cosine"].abs() <= 1 + 1e-6).all()


def test_cl_analyze_reports_bad_input(runs, capsys):
    assert analyze.main(["interpolate", str(runs / "mcsgd"), "pointz=3"]) == 2
    assert "unknown option 'pointz'" in capsys.readouterr().err
    assert analyze.main(["bend", str(runs / "mcsgd")]) == 2
    assert analyze.main(["interpolate", str(runs / "mcsgd"), "pairs=[w_hat_1:w_star_2]"]) == 2


def test_batchnorm_statistics_recomputed_on_task_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[1].running_mean.fill_(7.0)
    x = torch.randn(64, 3)
    lmc.recompute_batchnorm(model, x, lambda b: b, batch_size=16)
    with torch.no_grad():
        features = model[0](x)
    torch.testing.assert_close(model[1].running_mean, features.mean(0))
    batch_vars = torch.stack([features[i:i + 16].var(0) for i in range(0, 64, 16)])
    torch.testing.assert_close(model[1].running_var, batch_vars.mean(0))
    assert not model.training and model[1].momentum == 0.1


class _TinyBenchmark:
    """A 1-task stand-in with float inputs, for BatchNorm models (no dataset needed)."""

    num_tasks, num_classes, input_shape = 1, 3, (4,)

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(200, 4, generator=gen) * 3 + 1
        self.y = torch.randint(0, 3, (200,), generator=gen)

    def check_task(self, task):
        assert task == 1

    def train_data(self, task):
        return self.x, self.y

    test_data = train_data

    def class_masks(self, split):
        return None

    def to_input(self, x):
        return x


def test_paths_recompute_batchnorm_statistics_consistently():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    a = {k: v.clone() for k, v in model.state_dict().items()}
    b = {k: v.clone() for k, v in a.items()}
    b["1.running_mean"] += 5.0  # same weights, stale statistics at one end
    bench = _TinyBenchmark()
    recompute = lmc.PointEvaluator(model, bench, task=1, bn_batches=2, bn_batch_size=100)
    curve = lmc.interpolate(recompute, a, b, points=3)
    assert curve["loss"].nunique() == 1  # statistics from the data, whatever the buffers say
    stale = lmc.PointEvaluator(model, bench, task=1, bn_mode="interpolate")
    assert lmc.interpolate(stale, a, b, points=3)["loss"].nunique() == 3


def test_cl_analyze_help_describes_every_option(capsys):
    """Issue 34 item 10: the help listed bare option names."""
    from cl_runner.analyze.options import AnalyzeOptions

    assert analyze.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "points int = 21 points along each path, end points included." in text
    assert "batchnorm recompute|interpolate = recompute" in text
    assert "split test|train = test" in text
    for name in AnalyzeOptions.__dataclass_fields__:
        if name != "paths":
            assert f" {name} " in text, name
