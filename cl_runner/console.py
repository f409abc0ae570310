"""Terminal output that stays readable off a terminal (CI logs, ``make run | tee log``).

On a terminal the runner prints through rich as usual (colours, log lines laid out in
columns, tables at the terminal's width). Off a terminal (a pipe, a file) rich would wrap
every line at 80 columns and pad log lines with spaces, cutting paths in two; here instead
text is never wrapped (a path comes out whole, on one line), tables are laid out up to
:data:`PIPE_WIDTH` columns, log records are one plain line each, and nothing carries colour
codes.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from rich.console import Console

#: the widest a table is laid out off a terminal (text is not wrapped at all)
PIPE_WIDTH = 200


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (``stderr``: on stderr). On a terminal or in Jupyter, rich's
    own; otherwise one that never wraps text (``soft_wrap``), lays tables out up to
    :data:`PIPE_WIDTH` columns and writes no ANSI escape codes."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or probe.is_jupyter:
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True, color_system=None)


class LineHandler(logging.StreamHandler):
    """Log records as single plain lines: ``[YYYY-MM-DD HH:MM:SS] LEVEL    message`` (the
    message as the configured formatter renders it), never wrapped or padded."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"[{stamp}] {record.levelname:<8} {super().format(record)}"


def log_handler(**rich_options: Any) -> logging.Handler:
    """The console log handler of ``cl-run`` (``conf/hydra/job_logging/rich.yaml`` names this
    factory): a :class:`rich.logging.RichHandler` (with ``rich_options``) when stdout is a
    terminal, else a :class:`LineHandler` on stdout."""
    out = console()
    if out.is_terminal or out.is_jupyter:
        from rich.logging import RichHandler

        return RichHandler(**rich_options)
    return LineHandler(sys.stdout)
