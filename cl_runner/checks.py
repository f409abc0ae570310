"""Value checks of config fields that raise :class:`~cl_runner.errors.ConfigError` naming the
key. A bottom-layer module: it imports only :mod:`cl_runner.errors`, so every layer may use it."""

from __future__ import annotations

import math
from typing import Any

from cl_runner.errors import ConfigError


def check_value(key: str, value: Any, *, ge: float | None = None, gt: float | None = None,
                le: float | None = None, lt: float | None = None, nullable: bool = False) -> None:
    """Raise unless ``value`` lies within the given bounds (``None`` passes when ``nullable``;
    a NaN or infinite float never passes).

    Args:
        key: the full key for the message, e.g. ``"benchmark.batch_size"``.
        value: the number to check.
        ge, gt: lower bound, inclusive or exclusive (give at most one).
        le, lt: upper bound, inclusive or exclusive (give at most one).
        nullable: ``None`` is a valid value (the message then says ``or null``).

    Raises:
        ConfigError: ``"{key} must be >= 1, got 0"``, ``"... must be in [0, 1), got 1.5"``,
            ``"... must be > 0 or null, got -1"``, ``"... must be a finite number > 0, got inf"``.
    """
    if value is None and nullable:
        return
    low = ge if ge is not None else gt
    high = le if le is not None else lt
    finite = not isinstance(value, float) or math.isfinite(value)  # inf passed `> 0` before
    ok = value is not None and finite
    ok = ok and (ge is None or value >= ge) and (gt is None or value > gt)
    ok = ok and (le is None or value <= le) and (lt is None or value < lt)
    if ok:
        return
    if low is not None and high is not None:
        text = f"in {'[' if ge is not None else '('}{low}, {high}{']' if le is not None else ')'}"
    elif low is not None:
        text = f"{'>=' if ge is not None else '>'} {low}"
    else:
        text = f"{'<=' if le is not None else '<'} {high}"
    text = text if finite else f"a finite number {text}"
    raise ConfigError(f"{key} must be {text}{' or null' if nullable else ''}, got {value}")


def check_at_least_one(section: str, cfg: object, *keys: str, nullable: bool = False) -> None:
    """The repeated ``>= 1`` check: every ``cfg.<key>`` (counts, sizes) must be ``>= 1``.

    Args:
        section: the config group for the message, e.g. ``"strategy"``.
        cfg: the config object holding the keys as attributes.
        keys: attribute names, checked in order.
        nullable: ``None`` is valid too (``null`` = "all" / "the default").

    Raises:
        ConfigError: ``"{section}.{key} must be >= 1, got {value}"`` for the first key below 1.
    """
    for key in keys:
        check_value(f"{section}.{key}", getattr(cfg, key), ge=1, nullable=nullable)
