"""Weak points of issue 30 (item 11): a non-finite value is refused, no "tasks 1..0", a run
folder that cannot be made, Ctrl-C during start-up and a full disk each give one line, a second
sweep keeps the first sweep's ``multirun.yaml``."""

from __future__ import annotations

import pytest

from tests.conftest import compose_run
from tests.test_data_safety import TINY

pytestmark = pytest.mark.usefixtures("one_thread", "mnist_small_test_set")


# ------------------------------------------------------------- 11. weak points

@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_non_finite_learning_rate_is_refused_like_nan(value):
    """``optimizer.lr=inf`` was accepted while nan was refused."""
    from cl_runner.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^optimizer.lr must be a finite number > 0, got "
                                          rf"{value}$"):
        compose_run([f"optimizer.lr={value}"])


def test_an_early_sigterm_does_not_speak_of_tasks_1_to_0(tmp_path, monkeypatch, cl_run_here):
    """SIGTERM before the first task finished: no "tasks 1..0" in the message."""
    import signal

    from cl_runner import objective
    from cl_runner.errors import RunInterrupted

    def stopped(*args, **kwargs):
        raise RunInterrupted(signal.SIGTERM, 0)

    monkeypatch.setattr(objective, "run_objective", stopped)
    code, _, err = cl_run_here([f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 143
    [line] = [ln for ln in err.splitlines() if ln.strip()]
    assert "1..0" not in line
    assert line.startswith("interrupted by SIGTERM after 0 finished task(s): no task was "
                           "finished, nothing to resume; run the same command again")


@pytest.mark.parametrize("where", ["file", "under_a_file", "immutable"])
def test_a_run_folder_that_cannot_be_made_gives_one_line(tmp_path, cl_run_here, where):
    """``hydra.run.dir`` that is a file, under a file, or inside a folder nobody may write
    (``chattr +i``: read-only even for root): one line and exit 2, not Hydra's traceback."""
    import subprocess

    blocker = tmp_path / "blocker"
    if where == "immutable":
        blocker.mkdir()
        if subprocess.run(["chattr", "+i", str(blocker)], capture_output=True).returncode:
            pytest.skip("chattr +i is not available here")
    else:
        blocker.write_text("a file\n")
    folder = {"file": blocker, "under_a_file": blocker / "run",
              "immutable": blocker / "run"}[where]
    try:
        code, out, err = cl_run_here([f"hydra.run.dir={folder}"])
    finally:
        if where == "immutable":
            subprocess.run(["chattr", "-i", str(blocker)], check=True)
    assert code == 2
    [line] = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert line.startswith(f"error: cannot use {folder} as the run folder: "), line


def test_ctrl_c_during_start_up_gives_one_line(tmp_path, monkeypatch, cl_run_here):
    """Ctrl-C while the run is being set up (importing PyTorch, reading data): exit 130 and
    one line, not a 92-line traceback."""
    from cl_runner import objective

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(objective, "run_objective", interrupted)
    code, out, err = cl_run_here([f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 130
    [line] = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert line.startswith("interrupted (Ctrl-C)"), line


def test_a_second_sweep_keeps_the_first_sweeps_multirun_yaml(tmp_path, mnist_root, cl_run_here):
    """Two sweeps with other values into one sweep folder: Hydra rewrites ``multirun.yaml``;
    the first sweep's record is kept beside it (``multirun-<time>.yaml``). Relaunching the
    same sweep (to resume it) adds no copy."""
    sweep = tmp_path / "sweep"
    common = ["-m", *TINY, "benchmark.num_tasks=1", "benchmark.train_samples_per_task=100",
              f"data.root={mnist_root}", f"hydra.sweep.dir={sweep}"]
    assert cl_run_here([*common, "seed=1"])[0] == 0
    first = (sweep / "multirun.yaml").read_text()
    assert cl_run_here([*common, "seed=1"])[0] == 0  # the same sweep again: nothing archived
    assert sorted(p.name for p in sweep.glob("multirun*.yaml")) == ["multirun.yaml"]
    assert cl_run_here([*common, "seed=2"])[0] == 0
    [kept] = [p for p in sweep.glob("multirun-*.yaml")]
    assert kept.read_text() == first and "seed=1" in first
    assert "seed=2" in (sweep / "multirun.yaml").read_text()


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs mounted at ``tmp_path/disk`` (root only; skipped elsewhere)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_says_no_space_left_on_device(small_disk, mnist_root, cl_run_here):
    """EWC's resume state does not fit a 300 KiB disk: ``torch.save`` failed with "unexpected
    pos" and a traceback; now one line naming "No space left on device" and the file, exit 2.
    The rows of the finished tasks are not lost."""
    folder = small_disk / "run"
    code, out, err = cl_run_here([*TINY, "benchmark.num_tasks=2", "strategy=ewc",
                                  f"data.root={mnist_root}", f"hydra.run.dir={folder}"])
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: No space left on device: cannot "
                                                   f"write {folder}/"), err[-2000:]
    assert not list(folder.glob(".*.tmp"))  # no half-written temporary file left
