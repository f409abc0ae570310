"""The wheel: ``pip install .`` (not editable) gives a working ``cl-run`` with its config tree.

The wheel is built from a copy of the sources (nothing is written into the repository) and
installed without its dependencies into a fresh venv that sees the current environment's
site-packages through a ``.pth`` file (no network); the test checks that ``cl_runner`` is
imported from the wheel, not from this checkout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
#: the environment of the wheel's processes: no PYTHONPATH (one naming this checkout, e.g. a
#: worktree's, would import cl_runner from it instead of the wheel)
WHEEL_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _dependency_dirs() -> list[str]:
    """The site-packages folders the current interpreter imports from (torch, hydra, ...)."""
    return [p for p in sys.path if Path(p).name == "site-packages" and Path(p).is_dir()]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding only the cl_runner wheel; returns its ``bin`` folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    (src).mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for package in ("cl_runner", "hydra_plugins"):
        shutil.copytree(REPO / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", str(src), "-w", str(dist)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = dist.glob("cl_runner-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True).stdout
    (Path(site.strip()) / "zz_deps.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    return venv / "bin"


def test_wheel_holds_the_config_tree(wheel_venv):
    python = wheel_venv / "python"
    out = subprocess.run(
        [str(python), "-c", "import cl_runner, cl_runner.cli as c; print(cl_runner.__file__); "
                            "print(c.CONF_DIR)"],
        check=True, capture_output=True, text=True, cwd=wheel_venv, env=WHEEL_ENV).stdout.split()
    venv_root = str(wheel_venv.parent)
    assert out[0].startswith(venv_root), f"cl_runner imported from {out[0]}, not the wheel"
    conf = Path(out[1])
    assert conf.is_relative_to(venv_root)
    for name in ("config.yaml", "strategy/mcsgd.yaml", "benchmark/split_cifar100.yaml",
                 "experiment/rotated_mnist_mcsgd.yaml", "hydra/job_logging/rich.yaml",
                 "hydra/help/cl_run.yaml"):
        assert (conf / name).is_file(), name


def test_wheel_cl_run_composes(wheel_venv, tmp_path):
    cl_run = str(wheel_venv / "cl-run")
    assert Path(cl_run).is_file(), "the wheel installs no cl-run script"
    # from an unrelated folder: the config must come from the installed package
    job = subprocess.run([cl_run, "--cfg", "job", "strategy=mcsgd", "benchmark=permuted_mnist"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=WHEEL_ENV)
    assert job.returncode == 0, job.stderr[-2000:]
    cfg = yaml.safe_load(job.stdout)
    assert {"seed", "data", "benchmark", "model", "strategy", "optimizer", "hardware",
            "checkpoints", "probes"} <= set(cfg)
    assert cfg["strategy"]["name"] == "mcsgd" and cfg["benchmark"]["name"] == "permuted_mnist"
    assert cfg["model"]["name"] == "mlp" and cfg["optimizer"]["name"] == "sgd"
    assert not list(tmp_path.iterdir()), "--cfg wrote files"
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
        launcher = subprocess.run([cl_run, "hydra/launcher=submitit_slurm", "--cfg", "hydra", "-p",
                                   "hydra.launcher._target_"], capture_output=True, text=True,
                                  timeout=120, cwd=tmp_path, env=WHEEL_ENV)
        # the wheel's launcher plugin (one-line reports of stopped sweep jobs)
        assert launcher.stdout.strip() == "hydra_plugins.cl_runner_launchers.SlurmLauncher", (
            launcher.stdout + launcher.stderr[-2000:])


# slow: in make test the installed cl-run finds its config tree (above), the wheel holds
# hydra/help/cl_run.yaml (test_wheel_holds_the_config_tree) and tests/test_startup.py checks
# what --help prints
@pytest.mark.slow
def test_wheel_cl_run_helps(wheel_venv, tmp_path):
    helped = subprocess.run([str(wheel_venv / "cl-run"), "--help"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=WHEEL_ENV)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "cl-run" in helped.stdout and "mcsgd" in helped.stdout
    assert not list(tmp_path.iterdir()), "--help wrote files"
