"""``cl-run --help`` and config errors answer without importing PyTorch (a few hundred ms
instead of seconds): the schemas and registries import no torch; a run imports it when it
starts. Checked on the modules a fresh interpreter holds, not on timings."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "matplotlib")


def _imported(stderr: str) -> set[str]:
    """Top-level module names in the ``-X importtime`` report of a process."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


# slow: in make test, test_cl_run_answers_without_torch's model=mlp case runs the same compose
# and resolve (ConfigError, exit 2) in cl-run and checks that no torch was imported
@pytest.mark.slow
def test_cli_schemas_and_resolve_import_no_torch():
    code = (
        "import sys\n"
        "import cl_runner.cli\n"
        "from hydra import compose, initialize_config_dir\n"
        "from cl_runner.dispatch import resolve\n"
        "with initialize_config_dir(config_dir=cl_runner.cli.CONF_DIR, version_base='1.3'):\n"
        "    cfg = compose('config', overrides=['strategy=ewc', 'model=mlp',\n"
        "                                       'benchmark=split_cifar100'])\n"
        "try:\n"
        "    resolve(cfg)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out == ["ConfigError", "[]"], out  # mlp does not fit split_cifar100


# slow: in make test the cl-run cases below import the registries without torch, and every
# run builds its strategy through STRATEGIES.build (which must import the declared module)
@pytest.mark.slow
def test_declared_module_is_imported_when_built():
    code = ("import sys\n"
            "from cl_runner.strategies import STRATEGIES\n"
            "from cl_runner.strategies.schemas import NaiveConfig\n"
            "print('torch' in sys.modules)\n"
            "print(type(STRATEGIES.build(NaiveConfig())).__module__, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out == ["False", "cl_runner.strategies.naive True"]


#: slow: the same path as a case kept in make test (--help: the help test below also reads
#: the imports; the other Hydra errors are raised while composing, as strategy.lr=0.1 is)
@pytest.mark.parametrize("args, code", [
    pytest.param(["--help"], 0, marks=pytest.mark.slow),
    pytest.param(["strategy=nope"], 1, marks=pytest.mark.slow),  # Hydra: unknown option
    (["strategy.lr=0.1"], 1),  # Hydra: key not in the schema
    pytest.param(["benchmark.num_tasks=x"], 1, marks=pytest.mark.slow),  # Hydra: wrong type
    (["benchmark=split_cifar100", "model=mlp"], 2),  # ours (dispatch.resolve): exit 2
])
def test_cl_run_answers_without_torch(args, code, tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cl_runner", *args,
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr[-3000:]
    imported = _imported(proc.stderr)
    assert "cl_runner" in imported and "hydra" in imported  # the report is read right
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_help_lists_the_groups_and_examples_not_the_schemas(tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cl_runner",
                           "strategy=mcsgd", "benchmark=split_cifar100", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = _imported(proc.stderr)
    assert "hydra" in imported and not imported & set(HEAVY), sorted(imported & set(HEAVY))
    text = proc.stdout
    assert text.startswith("cl-run: a continual-learning experiment runner")
    # a group's entry with its wrapped continuation lines (deeper indented) joined
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.split():
            entries.append(line)
        elif line.startswith("   ") and entries:
            entries[-1] += " " + line.strip()
    lines = {e.split()[0]: e for e in entries
             if e.split()[0] in ("benchmark", "model", "strategy", "optimizer", "hardware")}
    assert set(lines) == {"benchmark", "model", "strategy", "optimizer", "hardware"}
    # every option of a group is listed, the current choice marked
    assert "split_cifar100*" in lines["benchmark"] and "rotated_mnist," in lines["benchmark"]
    assert "resnet18_reduced*" in lines["model"]  # chosen by benchmark=split_cifar100
    for name in ("agem", "er", "ewc", "impresslearn", "multitask", "naive", "supsup"):
        assert f" {name}," in lines["strategy"] or lines["strategy"].endswith(f" {name}"), name
    assert "mcsgd*" in lines["strategy"]
    assert "rotated_mnist_mcsgd" in text and "cl-run -m strategy=naive,mcsgd" in text
    assert "lmc_lr: 0.0025" in text  # the composed config of the choices
    assert "schema" not in text  # neither schema/* groups nor run_schema
    assert "powered by Hydra" not in text  # Hydra's default template is replaced


def test_help_describes_the_chosen_options_keys_with_their_allowed_values(tmp_path):
    """Issue 34 item 10: ``cl-run strategy=mcsgd --help`` listed the keys bare; now each key
    of the chosen options has its type or allowed values, its default and its description
    (from the schema's docstring), without importing PyTorch."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cl_runner",
                           "strategy=mcsgd", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not _imported(proc.stderr) & set(HEAVY)
    text = proc.stdout
    joined = " ".join(text.split())  # descriptions wrap over lines
    assert "strategy.lmc_lr float = 0.0025 SGD learning rate of the line phase" in joined
    assert "strategy.line_gradient exact|unweighted|authors = unweighted" in joined
    assert "optimizer.lr float = 0.01 learning rate of task 1." in joined
    assert "eval.every_examples int or null = null instead of every_steps" in joined
    assert "hardware.device auto|cpu|cuda = auto" in joined
    assert "logger.every_steps int = 50" in joined
    naive = subprocess.run([sys.executable, "-m", "cl_runner", "--help"], capture_output=True,
                           text=True, timeout=120, cwd=tmp_path).stdout
    assert "strategy.lmc_lr" not in naive and "strategy=naive" in naive  # the chosen ones only


def test_help_cut_off_by_its_reader_ends_without_a_traceback(tmp_path):
    """``cl-run --help | head`` ended in a BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "cl_runner", "--help"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before a byte is written: EPIPE for sure
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, as a Unix tool
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
