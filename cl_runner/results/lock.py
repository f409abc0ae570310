"""One process at a time in a run folder: an exclusive lock (``filelock``, an ``flock`` on
``<run folder>/.lock``) held from the folder check to the end of the run.

The folder check (:func:`cl_runner.results.run_folder.check_run_folder`) and the first write
are not atomic: two processes started into one folder at the same moment could both find it
free and both run, one result replacing the other. The lock closes that window. The kernel
drops an ``flock`` with its process, so a killed run (``kill -9``) leaves no stale lock, and the
lock file (empty) stays in the folder of a run that started.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from cl_runner.results.run_folder import RunFolderError

#: the lock file in a run folder
LOCK_FILE = ".lock"


@contextmanager
def folder_lock(out_dir: str | Path) -> Iterator[list[bool]]:
    """Hold the run folder's lock for the ``with`` block (the folder is created if missing).

    Yields:
        A list the caller appends to once the run has written into the folder; when it stays
        empty (a refusal), the lock file (and the folder, when this call created it) is
        removed again, so a refused run leaves nothing.

    Raises:
        RunFolderError: another process holds the lock (its run goes on in this folder), or
            the folder cannot be created or written (a file of that name, no permission);
            the message names the folder. Nothing is changed.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    path = out_dir / LOCK_FILE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        lock = FileLock(path, timeout=0)
        lock.acquire()
    except Timeout:
        raise RunFolderError(
            f"{out_dir} is in use by another process (it holds the folder's lock {LOCK_FILE}); "
            f"wait for it, stop it, or choose another run folder") from None
    except OSError as exc:
        raise RunFolderError(f"cannot write into the run folder {out_dir}: "
                             f"{exc.strerror or exc}") from None
    wrote: list[bool] = []
    try:
        yield wrote
    finally:
        if not wrote and not existed:
            path.unlink(missing_ok=True)
        lock.release()
        if not wrote and created:
            try:
                out_dir.rmdir()  # only when empty
            except OSError:
                pass
