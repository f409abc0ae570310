"""Shared fixtures: the real MNIST folder, and composing run configs as the CLI does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cl_runner.cli import CONF_DIR
from cl_runner.dispatch import resolve

REPO = Path(__file__).resolve().parent.parent


def find_mnist_root() -> Path | None:
    """``CL_RUNNER_DATA`` when it holds MNIST, else ``../shared/data`` beside the repo."""
    for candidate in (os.environ.get("CL_RUNNER_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").exists():
            return Path(candidate)
    return None


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny tensors and ResNet steps on a shared 2-core machine
    run up to ~40x faster than with 2 contending threads); restores the thread count after.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
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


def compose_cfg(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides``, exactly as ``cl-run`` does."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides or []))


def compose_run(overrides: list[str] | None = None):
    """Composed and resolved :class:`~cl_runner.config.RunConfig`."""
    return resolve(compose_cfg(overrides))
