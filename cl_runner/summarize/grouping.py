"""Grouping runs: the keys swept on the command line, group labels and file-name slugs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from cl_runner.summarize.runs import RunRecord

#: grouping keys that are always used first (unless ``group_by`` is given)
BASE_GROUP_KEYS = ("benchmark", "strategy")
#: override keys never used for grouping: the seed (aggregated over) and keys that do not
#: change the numbers
NOT_GROUPED = ("seed", "progress", "force", "data", "hydra")


def override_key(override: str) -> str | None:
    """The config key an override sets (``+a.b=1`` -> ``a.b``), or None for a malformed one."""
    key = override.split("=", 1)[0].lstrip("+~").strip()
    if "@" in key:  # group@package=option: the group
        key = key.split("@", 1)[0]
    return key or None


def config_value(record: RunRecord, key: str) -> Any:
    """The value of a dotted key in the run's config; a config group (``strategy``) gives the
    option's ``name``; None when the run has no such key."""
    node: Any = record.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return record.get(key) if "." not in key else None
        node = node[part]
    if isinstance(node, dict):
        return node.get("name", json.dumps(node, sort_keys=True))
    return node


def display_value(value: Any) -> str:
    """A config value as shown in tables and group labels (None -> ``-``, lists as JSON)."""
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def swept_keys(records: Sequence[RunRecord]) -> list[str]:
    """Keys set on the command line whose value differs between the runs, in order of first
    appearance; never the seed, ``hydra.*`` or keys that do not change results."""
    keys: list[str] = []
    for record in records:
        for override in record.overrides:
            key = override_key(override)
            if key is None or key.split(".")[0] in NOT_GROUPED or key in keys:
                continue
            keys.append(key)
    return [k for k in keys
            if len({display_value(config_value(r, k)) for r in records}) > 1]


def default_group_keys(records: Sequence[RunRecord]) -> list[str]:
    """Benchmark, strategy, then every swept key except the seed (see :func:`swept_keys`)."""
    return list(BASE_GROUP_KEYS) + [k for k in swept_keys(records) if k not in BASE_GROUP_KEYS]


def group_label(keys: Sequence[str], values: Sequence[str], skip: Sequence[str] = ()) -> str:
    """``rotated_mnist / naive / optimizer.lr=0.05``: base keys by value, others as key=value."""
    parts = [v if k in BASE_GROUP_KEYS else f"{k}={v}"
             for k, v in zip(keys, values, strict=True) if k not in skip]
    return " / ".join(parts) if parts else "all runs"


def slug(text: str) -> str:
    """A file-name-safe version of a group label."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text.replace(" / ", "__")).strip("_") or "all"
