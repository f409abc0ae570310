"""``python -m cl_runner.analyze`` = ``cl-analyze``."""

import sys

from cl_runner.analyze.main import main

if __name__ == "__main__":
    sys.exit(main())
