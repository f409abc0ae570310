"""``key=value`` command-line options for the console tools other than ``cl-run``
(``cl-summarize``, ``cl-analyze``): Hydra's override syntax, validated against a dataclass
(docs/design.md: Hydra is the only CLI; there is no argparse in the project)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


def parse_options(argv: Sequence[str], schema: type[T], error: type[Exception],
                  positional: str = "paths") -> T:
    """Split ``argv`` into positional arguments and ``key=value`` options and validate the
    options against the dataclass ``schema``.

    An argument is an option when it contains ``=`` and its key is a field of ``schema``; one
    with ``=`` whose key is not a field, that is not an existing path and has no ``/`` in its
    key, is reported as an unknown option; anything else is positional and appended to the
    list field ``positional``.

    Returns:
        An instance of ``schema``.

    Raises:
        error: an unknown option or a value of the wrong type (the message names the key).
    """
    option_names = set(schema.__dataclass_fields__)
    rest, dotlist = [], []
    for arg in argv:
        key = arg.split("=", 1)[0]
        if "=" in arg and key in option_names:
            dotlist.append(arg)
        elif "=" in arg and not Path(arg).exists() and "/" not in key:
            raise error(f"unknown option '{key}'; options: "
                        f"{', '.join(sorted(option_names - {positional}))}")
        else:
            rest.append(arg)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(dotlist))
        options: Any = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise error((f"{key}: " if key else "") + str(exc).splitlines()[0]) from exc
    setattr(options, positional, list(getattr(options, positional)) + rest)
    return options
