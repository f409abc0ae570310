"""The Makefile (issue 34, item 12): on a fresh clone `make run` and `make test` install what
they need first; once installed they only run; a changed pyproject.toml installs again.
Checked with `make -n` (print, run nothing) in a copy holding the Makefile and pyproject.toml
only, so no virtualenv is made or changed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def dry_run(folder: Path, target: str) -> str:
    """What ``make -n TARGET`` would run in ``folder``."""
    proc = subprocess.run(["make", "-n", target], cwd=folder, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "CL_RUNNER_DATA": "/data"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture()
def clone(tmp_path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("target, command", [("run", ".venv/bin/cl-run strategy=mcsgd"),
                                              ("test", ".venv/bin/python -m pytest")])
def test_run_and_test_install_when_needed_and_only_then(clone, target, command):
    fresh = dry_run(clone, target)  # no .venv: make it, install, then run
    assert "-m venv .venv" in fresh and "pip install --quiet -e" in fresh
    assert fresh.index("pip install") < fresh.index(command)
    # installed: the stamp newer than pyproject.toml -> only the command
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")
    (clone / ".venv" / "bin" / "python").chmod(0o755)
    stamp = clone / ".venv" / ".installed"
    stamp.write_text("")
    pyproject = clone / "pyproject.toml"
    os.utime(pyproject, (1_000_000_000, 1_000_000_000))
    installed = dry_run(clone, target)
    assert "pip install" not in installed and command in installed
    # pyproject.toml changed since the install: install again (into the same .venv)
    os.utime(pyproject, None)
    os.utime(stamp, (1_000_000_000, 1_000_000_000))
    changed = dry_run(clone, target)
    assert "pip install --quiet -e" in changed and command in changed
    assert changed.index("pip install") < changed.index(command)


def test_setup_always_installs_again(clone):
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / ".installed").write_text("")
    out = dry_run(clone, "setup")
    assert "rm -f .venv/.installed" in out


def test_ci_runs_the_readme_quickstart():
    """`.ci/run` installs nothing by itself: it runs `make run` and `make test`, the two
    commands of the README's quickstart."""
    ci = (REPO / ".ci" / "run").read_text()
    assert "make setup" not in ci
    assert ci.index("make run") < ci.index("make test")
    quickstart = (REPO / "README.md").read_text().split("## Quickstart", 1)[1].split("```")[1]
    commands = [ln.split("#")[0].strip() for ln in quickstart.splitlines()[1:] if ln.strip()]
    assert commands == ["make run", "make test"]
