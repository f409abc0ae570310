"""``python -m cl_runner`` = ``cl-run``."""

from cl_runner.cli import run

if __name__ == "__main__":
    run()
