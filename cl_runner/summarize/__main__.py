"""``python -m cl_runner.summarize``: the ``cl-summarize`` command."""

import sys

from cl_runner.summarize import main

sys.exit(main())
