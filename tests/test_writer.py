"""Run-folder file writing (cl_runner.results.writer)."""

import os

from cl_runner.results.writer import _UMASK, atomic_write_text


def test_atomic_write_gives_ordinary_permissions_not_owner_only(tmp_path):
    """Run files are readable by the group and others as with open() (0666 minus umask)."""
    path = atomic_write_text(tmp_path / "a.csv", "x\n")
    assert path.read_text() == "x\n"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_UMASK
    assert not list(tmp_path.glob(".a.csv.*"))  # no temporary file left behind
