"""cl_runner: a continual-learning experiment runner driven by Hydra configuration.

``from cl_runner import run`` (:func:`cl_runner.api.run`) runs an experiment from Python and
returns its accuracy matrix, metrics and summary; ``load_run`` reads a finished run folder.
Both are imported on first use, so ``import cl_runner`` itself stays cheap (no Hydra, no
PyTorch).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["RunResult", "load_run", "run"]


def __getattr__(name: str) -> Any:
    """The API's names, imported from :mod:`cl_runner.api` when first asked for (PEP 562)."""
    if name in __all__:
        from cl_runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'cl_runner' has no attribute {name!r}")
