"""Shared fixtures: the real MNIST folder, a small CIFAR-100 archive, composing run configs as
the CLI does, and the test data of every registered benchmark."""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from cl_runner.cli import CONF_DIR
from cl_runner.data import BENCHMARKS
from cl_runner.data.cifar import SplitCIFAR100Config, write_cifar10_archive, write_cifar100_archive
from cl_runner.data.schemas import MNISTConfig, SplitCIFAR10Config, SplitMNISTConfig
from cl_runner.dispatch import resolve
from cl_runner.models import MODELS
from cl_runner.strategies import STRATEGIES

REPO = Path(__file__).resolve().parent.parent


def find_mnist_root() -> Path | None:
    """``CL_RUNNER_DATA`` when it holds MNIST, else ``../shared/data`` beside the repo."""
    for candidate in (os.environ.get("CL_RUNNER_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").exists():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for every test (tiny tensors and ResNet steps on a shared 2-core
    machine run up to ~40x faster than with 2 contending threads); restores the thread count
    after. Runs in subprocesses choose theirs with ``hardware.num_threads=1``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = find_mnist_root()
    if root is None:
        pytest.skip("real MNIST not found: set CL_RUNNER_DATA to a folder holding MNIST/raw/")
    return root


#: images per class of the generated CIFAR-100 archive (the real one: 500 train, 100 test)
CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS = 4, 2


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """A data root holding ``cifar-100-python/`` in CIFAR-100's own pickle format, written once
    per session by :func:`~cl_runner.data.cifar.write_cifar100_archive` (4 training and 2 test
    images per class, seed 0; read it with ``benchmark.verify_checksums=false``). Shared:
    tests must not modify it (tests/test_faults.py corrupts copies of its own)."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar100_archive(root, CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS, seed=0)
    return root


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory) -> Path:
    """A data root holding ``cifar-10-batches-py/`` in CIFAR-10's own pickle format, written
    once per session by :func:`~cl_runner.data.cifar.write_cifar10_archive` (10 training and 4
    test images per class, seed 0; read it with ``benchmark.verify_checksums=false``).
    Shared: tests must not modify it."""
    root = tmp_path_factory.mktemp("cifar10")
    write_cifar10_archive(root, 10, 4, seed=0)
    return root


#: MNIST test images per task in the runs of :data:`BENCHMARK_DATA` (the real test set:
#: 10,000, whose evaluation and rotation took most of each registry-driven run)
MNIST_TEST_IMAGES = 1000


#: what use_small_mnist_test_set's loader read, by data root (read once per session)
_MNIST_READ: dict[tuple[str, bool], tuple[torch.Tensor, ...]] = {}


def use_small_mnist_test_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``monkeypatch``: the MNIST benchmarks read only the first
    :data:`MNIST_TEST_IMAGES` images of the test set (the training set as it is). The files of
    a data root are read once per session; each load gets its own copies of the tensors."""
    from cl_runner.data import mnist

    load = mnist.load_mnist

    def load_mnist(root, download=True):
        key = (str(Path(root).expanduser().resolve()), download)
        if key not in _MNIST_READ:
            train_x, train_y, test_x, test_y = load(root, download)
            _MNIST_READ[key] = (train_x, train_y, test_x[:MNIST_TEST_IMAGES],
                                test_y[:MNIST_TEST_IMAGES])
        return tuple(t.clone() for t in _MNIST_READ[key])

    monkeypatch.setattr(mnist, "load_mnist", load_mnist)


@pytest.fixture
def mnist_small_test_set(mnist_root, monkeypatch) -> Path:
    """``mnist_root``, read by this test with :func:`use_small_mnist_test_set`."""
    use_small_mnist_test_set(monkeypatch)
    return mnist_root


#: the test data of each dataset: benchmark config class (a benchmark's config subclasses
#: one of them) -> (fixture giving its data root, overrides that read it and keep tasks
#: small: 300 real MNIST training and 1,000 test images per task; the archive's 20 per task).
#: A new benchmark on one of these datasets is tested by the registry-driven tests without new
#: code; one on a new dataset makes them fail until its small test data are added here.
BENCHMARK_DATA: dict[type, tuple[str, list[str]]] = {
    MNISTConfig: ("mnist_small_test_set", ["benchmark.train_samples_per_task=300"]),
    SplitMNISTConfig: ("mnist_small_test_set", ["benchmark.train_samples_per_task=300"]),
    SplitCIFAR100Config: ("cifar_root", ["benchmark.verify_checksums=false"]),
    SplitCIFAR10Config: ("cifar10_root", ["benchmark.verify_checksums=false"]),
}


def benchmark_overrides(request: pytest.FixtureRequest, benchmark: str) -> list[str]:
    """Overrides that select registered ``benchmark`` on its small test data (no download).

    Raises:
        pytest.fail: no entry of :data:`BENCHMARK_DATA` covers the benchmark's config class.
    """
    config = BENCHMARKS.get(benchmark).config
    for base, (fixture, extra) in BENCHMARK_DATA.items():
        if issubclass(config, base):
            root = request.getfixturevalue(fixture)
            return [f"benchmark={benchmark}", f"data.root={root}", "data.download=false", *extra]
    pytest.fail(f"benchmark {benchmark!r} ({config.__name__}) has no test data: add its "
                f"dataset to BENCHMARK_DATA in tests/conftest.py")


def fitting_model(cfg: DictConfig) -> str | None:
    """``None`` when the model of composed ``cfg`` fits its benchmark and strategy (the checks
    of :func:`~cl_runner.dispatch.resolve`); otherwise the first registered model the
    benchmark supports that is a supermask model exactly when the strategy needs one (e.g.
    strategy=supsup on Split CIFAR-100 -> ``masked_resnet18_reduced``).

    Raises:
        AssertionError: no registered model fits.
    """
    supported = getattr(BENCHMARKS.get(cfg.benchmark.name).config, "supported_models", None)
    needs_mask = getattr(STRATEGIES.get(cfg.strategy.name).config, "needs_supermask_model", False)

    def fits(name: str) -> bool:
        is_mask = getattr(MODELS.get(name).config, "is_supermask", False)
        return (supported is None or name in supported) and (is_mask or not needs_mask)

    if fits(cfg.model.name):
        return None
    for name in supported or MODELS.names():
        if fits(name) and getattr(MODELS.get(name).config, "is_supermask", False) == needs_mask:
            return name
    raise AssertionError(f"no registered model fits benchmark={cfg.benchmark.name} "
                         f"strategy={cfg.strategy.name}")


#: 2 tasks (of the small per-task data given by BENCHMARK_DATA)
TINY = ["benchmark.num_tasks=2", "progress=false", "hardware=cpu", "hardware.num_threads=1"]
class FloatBenchmark:
    """The test double of a benchmark for strategy unit tests: what strategies read from one,
    ``to_input`` (stored rows -> float inputs) and the training class masks (``(T, C)`` bool, or
    None: no masking)."""

    def __init__(self, masks: torch.Tensor | None = None) -> None:
        self.masks = masks

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def class_masks(self, split):
        return self.masks


#: per-strategy settings that keep the CPU time small; a new strategy runs with its defaults
FAST = {"mcsgd": ["strategy.subset_size=50", "strategy.lmc_batch_size=10",
                  "strategy.line_samples=2"],
        "ewc": ["strategy.fisher_samples=64"],
        # task inference is on (where the task id is not given it is the headline; 1,000 test
        # images per task keep it cheap); one basis mask: task 2 learns only the coefficients
        "impresslearn": ["strategy.basis_size=1"],
        # 128 retraining epochs per task drive a tiny archive's test loss to 0.000000
        "gdumb": ["strategy.epochs=2"],
        "gem": ["strategy.memory_per_task=32"]}
#: per-model settings that keep the CPU time small; a new model runs with its defaults
SMALL_MODEL = {"resnet18_reduced": {"model.nf": 8}, "masked_resnet18_reduced": {"model.nf": 4}}


def tiny_run_cfg(request: pytest.FixtureRequest, strategy: str, benchmark: str,
                 extra: list[str] | None = None) -> DictConfig:
    """The composed config of registered ``strategy`` on 2 tasks of registered ``benchmark``'s
    small test data (:func:`benchmark_overrides`), with :data:`FAST` settings, the model the
    groups select or else the one that fits (:func:`fitting_model`), made small by
    :data:`SMALL_MODEL`, and ``extra`` overrides; on the task-incremental scenario when the
    strategy refuses the benchmark's default one (``unsupported_scenarios``) and ``extra``
    names none. Resolve it with ``resolve``."""
    overrides = (benchmark_overrides(request, benchmark) + TINY + [f"strategy={strategy}"]
                 + FAST.get(strategy, []) + list(extra or []))
    cfg = compose_cfg(overrides)
    refused = getattr(STRATEGIES.get(strategy).config, "unsupported_scenarios", {})
    scenario = cfg.benchmark.get("scenario")
    if scenario is not None and getattr(scenario, "value", scenario) in refused and not any(
            o.startswith("benchmark.scenario=") for o in extra or []):
        # a strategy that refuses the benchmark's default scenario (supermasks on class-IL)
        # runs it task-incrementally; tests/test_strategies.py checks the refusal
        overrides.append("benchmark.scenario=task")
        cfg = compose_cfg(overrides)
    model = fitting_model(cfg)
    if model is not None:
        cfg = compose_cfg(overrides + [f"model={model}"])
    for key, value in SMALL_MODEL.get(cfg.model.name, {}).items():
        OmegaConf.update(cfg, key, value)
    return cfg


def refused_scenario(strategy: str, cfg: DictConfig) -> str | None:
    """Why registered ``strategy`` refuses the scenario of composed ``cfg``'s benchmark (its
    config's ``unsupported_scenarios``; a benchmark without ``scenario`` is domain-incremental),
    or None when it runs there."""
    refused = getattr(STRATEGIES.get(strategy).config, "unsupported_scenarios", {})
    scenario = cfg.benchmark.get("scenario")
    value = "domain_incremental" if scenario is None else getattr(scenario, "value", scenario)
    return refused.get(str(value))


#: composed configs by their overrides: Hydra takes 0.1-0.5 s to compose one, and the suite
#: composes many lists more than once (interpolations such as ${oc.env:...} stay unresolved
#: in a composed config, so a cached one still reads the environment when it is used)
_COMPOSED: dict[tuple[str, ...], DictConfig] = {}


def compose_cfg(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides``, exactly as ``cl-run`` does; once per
    list of overrides in a session, each call getting its own copy (errors are not cached)."""
    key = tuple(overrides or [])
    if key not in _COMPOSED:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            _COMPOSED[key] = compose("config", overrides=list(key))
    return copy.deepcopy(_COMPOSED[key])


def compose_run(overrides: list[str] | None = None):
    """Composed and resolved :class:`~cl_runner.config.RunConfig`."""
    return resolve(compose_cfg(overrides))


@pytest.fixture
def cl_run_here(monkeypatch, capsys):
    """``cl-run`` in this process: ``cl_run_here(args)`` calls the Hydra app of
    :func:`cl_runner.cli.run` with ``args`` as its command line (the same composition, run
    folder checks, logging and messages as ``python -m cl_runner``, without the ~5 s of a new
    interpreter importing torch) and returns ``(exit code, stdout, stderr)``. The logging
    handlers Hydra installs are closed and the root logger restored after each call.
    tests/test_cli.py runs the real entry point in a subprocess."""
    from cl_runner.cli import run

    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps at the terminal's width

    def cl_run(args: list[str]) -> tuple[int, str, str]:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        monkeypatch.setattr(sys, "argv", ["cl-run", *args])
        capsys.readouterr()
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = capsys.readouterr()
        return code, out, err

    return cl_run


def train_resnet_head_snapshots(bench, strategy):
    """Train a small reduced ResNet-18 (nf=4) on the 2 tasks of a Split CIFAR-100 ``bench``
    with ``strategy`` (SGD lr 0.1, batch 5), recording the output layer after each task.

    Returns:
        ``(initial, snapshots, result)``: the linear head's weight ``(100, 32)`` before
        training, its value after each task, and the loop's ``SequenceResult``.
    """
    from cl_runner.models.resnet import ResNet18Reduced
    from cl_runner.training.hooks import RunnerHook
    from cl_runner.training.loop import train_sequence

    torch.manual_seed(0)
    model = ResNet18Reduced(3, 100, nf=4)
    initial = model.linear.weight.detach().clone()
    snapshots = []

    class Snapshot(RunnerHook):
        def after_evaluation(self, task, result):
            snapshots.append(model.linear.weight.detach().clone())

    result = train_sequence(bench, model, strategy,
                            lambda params, task: torch.optim.SGD(params, lr=0.1),
                            batch_size=5, eval_batch_size=100, epochs_per_task=1,
                            generator=torch.Generator().manual_seed(0), hooks=[Snapshot()])
    return initial, snapshots, result


class CrashAfterTask(BaseException):
    """Raised by :func:`run_crashing_after_task`: not an ``Exception``, like a kill."""


def run_crashing_after_task(monkeypatch, run, folder, task: int = 1) -> None:
    """Run ``run`` into ``folder`` and stop it right after the resume state of ``task`` is
    written (the runner's ResumeHook.after_evaluation), as a crash would; the hook is restored."""
    from cl_runner import resume as resume_mod
    from cl_runner.experiment import run_experiment

    original = resume_mod.ResumeHook.after_evaluation

    def after_evaluation(self, done, result):
        original(self, done, result)
        if done == task:
            raise CrashAfterTask

    monkeypatch.setattr(resume_mod.ResumeHook, "after_evaluation", after_evaluation)
    try:
        with pytest.raises(CrashAfterTask):
            run_experiment(run, folder)
    finally:
        monkeypatch.setattr(resume_mod.ResumeHook, "after_evaluation", original)
