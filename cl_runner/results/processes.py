"""The process that runs a run: what ``summary.json`` records about it (pid, host, start time)
and whether it is still alive, so a later process can tell a run going on from a crashed one."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks after boot)`` of a process from ``/proc``, or None
    when there is no such process or no ``/proc``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) "; fields 3, 4, ...
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_record() -> dict[str, Any]:
    """The fields ``summary.json`` records about the process running the run: ``pid``,
    ``host`` and ``pid_start`` (its start time in clock ticks after boot, None without
    ``/proc``), so a later process can tell whether the run is still going on."""
    stat = _proc_stat(os.getpid())
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "pid_start": stat[1] if stat else None}


def process_alive(pid: Any, host: Any, pid_start: Any = None) -> bool:
    """Whether the process recorded as ``pid`` on ``host`` is alive. A process on another
    host cannot be checked and counts as gone (e.g. a preempted job requeued on another node);
    so does this very process, a zombie, or a pid reused by a process started at another time
    than ``pid_start``."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or pid == os.getpid():
        return False
    if host != socket.gethostname():
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        return state not in ("Z", "X") and (not isinstance(pid_start, int) or pid_start == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True
