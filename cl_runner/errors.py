"""Errors the runner reports to the user as a one-paragraph message instead of a traceback,
and :class:`RunInterrupted` (a stop on a signal; no torch here, so the CLI catches it without
importing PyTorch)."""

import signal


class CLRunnerError(Exception):
    """Base class for user-facing errors (bad input, missing data, invalid settings)."""


class DatasetNotFoundError(CLRunnerError):
    """A dataset's files are missing from the data root and could not be downloaded."""


class ConfigError(CLRunnerError):
    """A configuration value is well-typed but invalid (e.g. a negative batch size)."""


class OverrideError(ConfigError):
    """A command-line style override does not compose into a config (an unknown key or
    option, a wrong type, a sweep value given to a single run); the message is Hydra's and
    its cause's. ``cl-run`` lets Hydra report these itself (exit 1); the Python API raises
    this."""


class TrainingDivergedError(CLRunnerError):
    """The training loss became NaN or infinite; the run stops instead of reporting chance-level
    numbers as a result."""


class DiskFullError(CLRunnerError):
    """A run file could not be written because its file system is full (``ENOSPC``, or a
    writer such as ``torch.save`` that failed with no space left); the message says
    "No space left on device" and names the file."""


class DatasetCorruptError(CLRunnerError):
    """A dataset's file is present but unusable (truncated, a wrong header, not a readable
    pickle); the message names the file and the cause."""


class RunInterrupted(Exception):
    """The run stopped on a signal at a step boundary.

    Attributes:
        signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
        exit_code: the shell's code for it, ``128 + signum`` (130, 143).
        tasks_done: tasks finished and saved (rows and resume state) before the stop.
    """

    def __init__(self, signum: int, tasks_done: int = 0) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        self.tasks_done = tasks_done
        super().__init__(f"interrupted by {signal.Signals(signum).name} after {tasks_done} "
                         f"finished task(s)")


def exception_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, for a one-line report of an underlying cause.

    torchvision's download error (``Error downloading F:`` then ``Tried MIRROR, got:`` and the
    cause, per mirror) becomes ``Error downloading F: CAUSE (N mirrors tried)``; any other
    multi-line message is joined with spaces; an empty one (a bare ``assert``) gives the
    exception's type name.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    causes = [lines[i + 1] for i, line in enumerate(lines[:-1])
              if line.startswith("Tried ") and line.endswith("got:")]
    if causes:
        distinct = "; ".join(dict.fromkeys(causes))
        plural = "s" if len(causes) > 1 else ""
        return f"{lines[0].rstrip(':')}: {distinct} ({len(causes)} mirror{plural} tried)"
    return " ".join(lines)
