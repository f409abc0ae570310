"""Device hygiene of the CUDA path, checked on the CPU (issue 16): for every registered
strategy, a short run under :class:`~tests.device_tracking.DeviceTracker` (a simulated second
device) must create every tensor it combines with the model and data on the run's device, hold
no host tensor in the strategy or the benchmark, and make no host sync in the training step.
The planted-bug tests show the check fails when a strategy does either."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

import cl_runner.experiment as experiment
from cl_runner.data import cifar, mnist
from cl_runner.data.cifar import write_cifar100_archive
from cl_runner.experiment import run_experiment
from cl_runner.strategies import STRATEGIES
from cl_runner.strategies.naive import Naive
from cl_runner.training.hooks import PhaseRunner
from tests.conftest import compose_cfg, compose_run, refused_scenario
from tests.device_tracking import DeviceTracker

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["benchmark.num_tasks=3", "benchmark.train_samples_per_task=120", "progress=false",
        "hardware=cpu", "benchmark.eval_batch_size=500"]
#: (eval_batch_size 500: the 1,000 MNIST test images per task of tests/conftest.py's
#: mnist_small_test_set are evaluated in two batches, as a real run's 10,000 in batches of 1,000)
#: settings that keep each strategy's own phases small and reach every code path in 3 tasks
#: of 120 examples (memories larger than their batches, ImpressLearn's coefficient tasks,
#: a multitask subset); a new strategy runs with its defaults
SMALL = {"mcsgd": ["strategy.subset_size=10", "strategy.lmc_batch_size=10",
                   "strategy.line_samples=2"],
         "impresslearn": ["strategy.basis_size=1"],
         "ewc": ["strategy.fisher_samples=20", "strategy.fisher_batch_size=8"],
         "agem": ["strategy.memory_batch_size=5"],
         "er": ["strategy.memory_size=50"],
         "multitask": ["strategy.samples_per_task=50"]}
#: further variants of a strategy's options that take other code paths
VARIANTS = [("ewc", ["strategy.mode=online"]),
            ("impresslearn", ["strategy.combine=topk", "strategy.coefficients=network"]),
            ("mcsgd", ["strategy.continual_start=w_bar", "strategy.line_gradient=exact"]),
            ("mcsgd", ["strategy.line_gradient=authors"]),
            ("mcsgd", ["strategy.line_gradient=authors", "strategy.lmc_full_batch=true"])]


def tracked_run(tmp_path, overrides, monkeypatch):
    """Run ``overrides`` under a :class:`DeviceTracker`, every optimizer step of every phase
    marked as the training step. Returns ``(tracker, summary, held)``: held = the host
    tensors the strategy and the benchmark hold at the end of the run."""
    tracker = DeviceTracker("cpu")
    built = {}
    original_train, original_run = experiment.train_sequence, PhaseRunner.run

    def train_sequence(benchmark, model, strategy, *args, **kwargs):
        built.update(benchmark=benchmark, model=model, strategy=strategy)
        return original_train(benchmark, model, strategy, *args, **kwargs)

    def phase_run(self, task, phase, epochs, steps_per_epoch, start_epoch, step,
                  max_steps=None):
        def marked(state, i):
            with tracker.step():
                return step(state, i)
        return original_run(self, task, phase, epochs, steps_per_epoch, start_epoch, marked,
                            max_steps)

    monkeypatch.setattr(experiment, "train_sequence", train_sequence)
    monkeypatch.setattr(PhaseRunner, "run", phase_run)
    for module, loader in ((mnist, "load_mnist"), (cifar, "load_cifar100")):
        # what the files hold is read into host memory (the tracker cannot see it made)
        monkeypatch.setattr(module, loader, tracker.reads_host(getattr(module, loader)))
    run = compose_run(TINY + overrides)
    with tracker:
        summary = run_experiment(run, tmp_path)
    held = (tracker.host_tensors(built["strategy"], "strategy")
            + tracker.host_tensors(built["benchmark"], "benchmark",)
            + [f"model.{k}" for k, v in built["model"].state_dict().items()
               if tracker.tag(v) == "host"])
    skip = set(getattr(built["benchmark"], "host_attributes", ()))
    held = [h for h in held if h.split(" ")[0].split(".")[1].split("[")[0] not in skip]
    return tracker, summary, held


def _strategy_overrides(strategy: str) -> list[str]:
    return [f"strategy={strategy}", *SMALL.get(strategy, [])]


#: host syncs that a strategy's algorithm makes in the training step, allowed there and only
#: there: strategy -> (op, file, function). GEM (Lopez-Paz & Ranzato 2017) solves its dual QP
#: on the host: one ``.cpu()`` of <g, g_k> and G G^T per step (cl_runner/strategies/gem.py).
ALGORITHM_SYNCS = {"gem": ("cpu", "cl_runner/strategies/gem.py", "after_backward")}


def algorithm_sync(violation: str, strategy: str | None) -> bool:
    """True when ``violation`` is the one host sync :data:`ALGORITHM_SYNCS` allows ``strategy``."""
    if strategy not in ALGORITHM_SYNCS:
        return False
    op, path, function = ALGORITHM_SYNCS[strategy]
    return bool(re.fullmatch(rf"host sync in the training step: {op} at {re.escape(path)}:\d+ "
                             rf"{function}", violation))


def check_clean(tracker, summary, held, strategy: str | None = None):
    assert summary["status"] == "complete"
    assert [v for v in tracker.violations if not algorithm_sync(v, strategy)] == []
    assert held == []


@pytest.mark.usefixtures("mnist_small_test_set")
@pytest.mark.parametrize("strategy", [  # stable_sgd: naive's code (test_er_multitask), slow
    pytest.param(name, marks=pytest.mark.slow) if name == "stable_sgd" else name
    for name in STRATEGIES.names()])
@pytest.mark.parametrize("benchmark", [pytest.param("permuted_mnist", marks=pytest.mark.slow),
                                       "rotated_mnist"])  # the same code paths: one in make test
def test_every_tensor_on_the_run_device_and_no_sync_in_the_step(tmp_path, mnist_root, monkeypatch,
                                                                strategy, benchmark):
    if refused_scenario(strategy, compose_cfg([f"benchmark={benchmark}", f"strategy={strategy}"])):
        benchmark = "split_mnist"  # class-incremental methods (WA, BiC): their own benchmark
    check_clean(*tracked_run(tmp_path, [f"data.root={mnist_root}", f"benchmark={benchmark}",
                                        *_strategy_overrides(strategy)], monkeypatch),
                strategy)


@pytest.mark.usefixtures("mnist_small_test_set")
@pytest.mark.parametrize(("strategy", "options"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_option_variants_keep_tensors_on_the_run_device(tmp_path, mnist_root, monkeypatch,
                                                        strategy, options):
    check_clean(*tracked_run(tmp_path, [f"data.root={mnist_root}", "benchmark=permuted_mnist",
                                        *_strategy_overrides(strategy), *options], monkeypatch),
                strategy)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar100_archive(root, 4, 2, seed=0)
    return root


#: slow: naive and stable_sgd (naive with its regime) add no code to the loop's class masks,
#: which every other strategy's case runs in make test
@pytest.mark.parametrize("strategy", [
    pytest.param(name, marks=pytest.mark.slow) if name in ("naive", "stable_sgd") else name
    for name in STRATEGIES.names()])
def test_task_incremental_masks_on_the_run_device(tmp_path, cifar_root, monkeypatch, strategy):
    """Split CIFAR-100 (generated archive, tiny ResNets): class masks and per-label masks."""
    model = (["model=masked_resnet18_reduced", "model.nf=2"]
             if strategy in ("supsup", "impresslearn") else ["model.nf=2"])
    check_clean(*tracked_run(tmp_path, [f"data.root={cifar_root}", "benchmark=split_cifar100",
                                        "benchmark.verify_checksums=false",
                                        "benchmark.train_samples_per_task=null",
                                        *_strategy_overrides(strategy), *model], monkeypatch),
                strategy)


# ------------------------------------------------------------------ planted bugs


class BareZerosAnchor(Naive):
    """A planted bug: an anchor made with a bare ``torch.zeros(n)`` (CPU on a CUDA run)."""

    def before_task(self, ctx):
        n = sum(p.numel() for p in ctx.model.parameters())
        self.anchor = torch.zeros(n)

    def penalty(self, model):
        flat = torch.cat([p.flatten() for p in model.parameters()])
        return 1e-3 * (flat - self.anchor).pow(2).sum()


class SyncInStep(Naive):
    """A planted bug: a host sync (``.item()``) in a step hook."""

    def after_step(self, model):
        self.last = next(model.parameters()).sum().item()


class IndexOnHost(Naive):
    """A planted bug: replay indices drawn on the CPU and never moved to the device."""

    def before_task(self, ctx):
        self.pool_x = ctx.train_x[:20].clone()

    def train_batch(self, batch):
        pick = torch.randperm(len(self.pool_x))[:2]  # host indices into a device tensor
        batch.x = torch.cat([batch.x, self.pool_x[pick]])
        batch.y = torch.cat([batch.y, batch.y[:2]])
        return batch


@pytest.mark.usefixtures("mnist_small_test_set")
@pytest.mark.parametrize(("planted", "expected"), [
    (BareZerosAnchor, "host tensor mixed with run-device tensor: sub at tests/test_devices.py"),
    (SyncInStep, "host sync in the training step: item at tests/test_devices.py"),
    (IndexOnHost, "host tensor mixed with run-device tensor: __getitem__ at tests/test_devices.py"),
])
def test_planted_device_bugs_are_caught(tmp_path, mnist_root, monkeypatch, planted, expected):
    entry = STRATEGIES.get("naive")
    monkeypatch.setitem(STRATEGIES._entries, "naive", dataclasses.replace(entry, registered=planted))
    tracker, _, held = tracked_run(tmp_path, [f"data.root={mnist_root}", "strategy=naive"],
                                   monkeypatch)
    assert any(v.startswith(expected) for v in tracker.violations), tracker.violations
    if planted is BareZerosAnchor:
        assert held == ["strategy.anchor (269322,) torch.float32"]  # the MLP's parameters


def test_tracker_tags_follow_factories_transfers_and_ops():
    with DeviceTracker("cpu") as tracker:
        host = torch.zeros(3)
        run = torch.zeros(3, device="cpu")
        moved = host.to("cpu")
        assert tracker.tag(host) == "host" and tracker.tag(run) == "run"
        assert tracker.tag(moved) == "run" and moved is not host  # a transfer is a new tensor
        assert tracker.tag(run + 1) == "run" and tracker.tag(torch.zeros_like(run)) == "run"
        assert tracker.tag(host * 2) == "host"
        _ = run + torch.tensor(2.0)  # a CPU scalar operand is fine on CUDA too
        assert tracker.violations == []
        _ = run + host
        assert tracker.violations and "add" in tracker.violations[0]
