"""The DER paper's protocols as presets (``+experiment=seq_mnist_*``, ``seq_cifar10_*``): they
fix the paper's values, the scenario stays a command-line choice, and Seq-CIFAR-10 runs 2 tasks
of a generated CIFAR-10 archive with its augmentation on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cl_runner.cli import CONF_DIR
from cl_runner.experiment import run_experiment
from tests.conftest import compose_run

DER_PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("seq_*.yaml"))
VDV_PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("split_mnist_*.yaml"))


def test_der_protocol_presets_exist():
    want = {"seq_mnist_" + n for n in ("naive", "er_b200", "er_b500", "der_b200", "der_b500",
                                       "derpp_b200", "derpp_b500", "lwf", "ewc_online",
                                       "icarl_b500", "multitask")}
    assert want <= set(DER_PRESETS)
    assert {n.replace("seq_mnist", "seq_cifar10") for n in want} <= set(DER_PRESETS)


def test_no_class_il_preset_sets_the_scenario():
    """The scenario is the command line's choice (``benchmark.scenario=task|domain|class``): no
    preset of the two papers' protocols sets it (nor the masks that follow from it)."""
    for name in DER_PRESETS + VDV_PRESETS:
        text = (Path(CONF_DIR) / "experiment" / f"{name}.yaml").read_text()
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert "scenario" not in body and "train_mask" not in body, name


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
@pytest.mark.parametrize("name", ["split_mnist_ewc", "seq_mnist_derpp_b500",
                                  "seq_cifar10_derpp_b200"])
def test_a_preset_fixes_the_protocol_and_leaves_the_scenario_open(name, scenario):
    default = compose_run([f"+experiment={name}"])
    assert default.benchmark.scenario.value == "class_incremental"
    run = compose_run([f"+experiment={name}", f"benchmark.scenario={scenario}"])
    assert run.benchmark.scenario.value == f"{scenario}_incremental"
    assert run.benchmark.train_mask is (scenario == "task")
    assert (run.optimizer, run.model, run.strategy) == (default.optimizer, default.model,
                                                        default.strategy)


def test_seq_mnist_presets_hold_the_der_papers_values():
    """mammoth utils/best_args.py 'seq-mnist' (read): lr, buffer, alpha, beta, batch 10, 1 epoch,
    MLP 784-100-100, SGD without momentum; oEWC's lambda doubled for our (lambda/2) penalty."""
    want = {"naive": (0.03, {}), "er_b200": (0.01, {"memory_size": 200, "replay_batch_size": 10}),
            "er_b500": (0.1, {"memory_size": 500}),
            "derpp_b200": (0.03, {"memory_size": 200, "replay_batch_size": 128, "alpha": 0.2,
                                  "beta": 1.0}),
            "derpp_b500": (0.03, {"memory_size": 500, "replay_batch_size": 10, "alpha": 1.0,
                                  "beta": 0.5}),
            "ewc_online": (0.03, {"ewc_lambda": 180.0, "gamma_ewc": 1.0}),
            "icarl_b500": (0.1, {"memory_size": 500, "units": "all"}),
            "icarl_b200": (0.1, {"memory_size": 200, "units": "all"}),
            "der_b200": (0.03, {"memory_size": 200, "replay_batch_size": 10, "alpha": 0.2}),
            "der_b500": (0.03, {"memory_size": 500, "replay_batch_size": 128, "alpha": 1.0}),
            # A-GEM: lr 0.1, minibatch 128; buffer // 5 tasks per task, class-balanced here
            "agem_b200": (0.1, {"memory_per_class": 20, "memory_batch_size": 128}),
            "agem_b500": (0.1, {"memory_per_class": 50, "memory_batch_size": 128})}
    for name, (lr, strategy) in want.items():
        run = compose_run([f"+experiment=seq_mnist_{name}"])
        assert (run.benchmark.batch_size, run.benchmark.epochs_per_task) == (10, 1)
        assert run.model.hidden_sizes == [100, 100] and run.optimizer.momentum == 0.0
        assert run.optimizer.lr == lr
        for key, value in strategy.items():
            assert getattr(run.strategy, key) == value, (name, key)
    assert compose_run(["+experiment=seq_mnist_lwf"]).optimizer.weight_decay == 0.0005


@pytest.mark.parametrize("name", ["wa", "bic"])
@pytest.mark.parametrize("buffer", [200, 500])
def test_seq_mnist_wa_bic_presets_say_their_lr_is_our_choice(name, buffer):
    """Neither the DER paper nor best_args has WA or BiC on Seq-MNIST: the presets borrow
    iCaRL's lr (0.1 at both buffers) in the protocol's setting, and their header says so."""
    preset = f"seq_mnist_{name}_b{buffer}"
    run = compose_run([f"+experiment={preset}"])
    assert (run.strategy.name, run.strategy.memory_size, run.optimizer.lr) == (name, buffer, 0.1)
    assert (run.benchmark.batch_size, run.benchmark.epochs_per_task) == (10, 1)
    assert run.model.hidden_sizes == [100, 100] and run.optimizer.momentum == 0.0
    header = (Path(CONF_DIR) / "experiment" / f"{preset}.yaml").read_text()
    assert "Our choice, not a paper's" in header and "'icarl' at 200 and 500: lr 0.1" in header


def test_seq_cifar10_presets_hold_the_der_papers_setting():
    for name in (n for n in DER_PRESETS if n.startswith("seq_cifar10_")):
        run = compose_run([f"+experiment={name}"])
        assert run.benchmark.name == "split_cifar10" and run.model.name == "resnet18_reduced"
        assert (run.benchmark.batch_size, run.benchmark.epochs_per_task) == (32, 50)
        assert run.benchmark.train_augmentation.value == "crop_flip"
        assert run.benchmark.crop_padding == 4 and run.benchmark.augment_replayed is True
        assert run.model.nf == 64 and run.optimizer.momentum == 0.0


@pytest.mark.parametrize("name", ["seq_cifar10_derpp_b500", "seq_cifar10_naive"])
def test_seq_cifar10_runs_two_tasks_of_a_generated_archive(tmp_path, cifar10_root, name):
    """The preset on 2 tasks of the generated CIFAR-10 archive (20 training images per task),
    ResNet-18 narrowed to nf 8 and 2 epochs to fit the CPU, augmentation on."""
    run = compose_run([f"+experiment={name}", f"data.root={cifar10_root}",
                       "benchmark.verify_checksums=false", "benchmark.num_tasks=2",
                       "benchmark.epochs_per_task=2", "model.nf=8", "progress=false",
                       "hardware=cpu", "hardware.num_threads=1"])
    assert run.benchmark.train_augmentation.value == "crop_flip"
    summary = run_experiment(run, tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == on_disk["status"] == "complete" and on_disk["num_tasks"] == 2
    assert on_disk["config"]["benchmark"]["train_augmentation"] == "crop_flip"
