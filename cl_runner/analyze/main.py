"""The ``cl-analyze`` entry point: parse the command line, run the command, print the tables."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import torch
from rich.markup import escape
from rich.table import Table

from cl_runner.analysis.runs import AnalysisError
from cl_runner.analyze.commands import Analysis
from cl_runner.analyze.options import COMMANDS, AnalyzeOptions
from cl_runner.console import console as make_console
from cl_runner.errors import CLRunnerError
from cl_runner.options import parse_options
from cl_runner.schema_help import describe_fields

USAGE = """usage: cl-analyze COMMAND RUN_DIR [RUN_DIR ...] [key=value ...]

commands: interpolate | plane | distances | curvature
Linear-mode-connectivity analyses over run folders of one benchmark and seed saved with
checkpoints.enabled=true (details: README, "Linear mode connectivity", and cl_runner/analyze/).

options (key=value): TYPE = default, then what it does
{options}
"""


def run_command(command: str, options: AnalyzeOptions) -> tuple[list[Table], Analysis]:
    """Run one command; returns its summary tables and the :class:`Analysis` (its ``files``
    list what was written).

    Raises:
        AnalysisError: unknown command, bad options, runs that do not fit together.
    """
    if command not in COMMANDS:
        raise AnalysisError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
    if options.num_threads is not None:
        torch.set_num_threads(options.num_threads)
    analysis = Analysis(options)
    tables = getattr(analysis, command)()
    return tables, analysis


def main(argv: Sequence[str] | None = None) -> int:
    """``cl-analyze``: returns the exit status (0 done, 2 a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # off a terminal: tables up to 200 columns, text (paths) never wrapped, no colour codes
    console, err = make_console(), make_console(stderr=True)
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(USAGE.format(options="\n".join(describe_fields(AnalyzeOptions,
                                                             skip=("paths",)))))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        options = parse_options(rest, AnalyzeOptions, AnalysisError)
        started = time.perf_counter()
        tables, analysis = run_command(command, options)
    except (CLRunnerError, FileNotFoundError, ValueError) as exc:
        err.print(f"[bold red]cl-analyze:[/] {escape(str(exc))}")
        return 2
    for table in tables:
        console.print(table)
    for problem in analysis.solutions.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}")
    console.print(f"wrote {len(analysis.files)} files to {escape(str(analysis.out))} "
                  f"({math.ceil(time.perf_counter() - started)}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
