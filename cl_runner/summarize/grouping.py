"""Grouping runs: the keys swept on the command line, group labels and file-name slugs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from cl_runner.results.names import bounded_name, is_result_neutral, override_key
from cl_runner.results.run_folder import differing_keys
from cl_runner.summarize.runs import RunRecord

#: grouping keys that are always used first (unless ``group_by`` is given)
BASE_GROUP_KEYS = ("benchmark", "strategy")
#: keys never used for grouping besides the result-neutral ones
#: (:data:`cl_runner.results.names.RESULT_NEUTRAL_KEYS`): the seed, aggregated over
NOT_GROUPED = ("seed",)


def ungrouped(key: str) -> bool:
    """Whether ``key`` is never a grouping key: the seed, or a result-neutral key
    (``hardware.num_threads``, ``eval.every_steps``, ``progress``, ``hydra.*`` ...)."""
    return key.split(".")[0] in NOT_GROUPED or is_result_neutral(key)


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
    appearance; never the seed or a result-neutral key (:func:`ungrouped`)."""
    keys: list[str] = []
    for record in records:
        for override in record.overrides:
            key = override_key(override)
            if key is None or ungrouped(key) or key in keys:
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


#: longest file-name stem made from a group label (bytes; a file system allows 255 per name,
#: and a suffix such as ``_mean.csv`` or a ``heatmap_`` prefix is added)
MAX_SLUG = 120


def slug(text: str) -> str:
    """A file-name-safe version of a group label, at most :data:`MAX_SLUG` bytes: a longer one
    is cut and ends with ``~`` and a hash of the whole label (distinct labels, distinct names)."""
    safe = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text.replace(" / ", "__")).strip("_") or "all"
    return bounded_name(safe, MAX_SLUG, identity=text)


def _has(config: Any, key: str) -> bool:
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def result_config(record: RunRecord) -> dict[str, Any]:
    """The run's config without its seed and its result-neutral keys: two runs of one group
    must agree on it."""
    config = record.config if isinstance(record.config, dict) else {}
    return {k: v for k, v in config.items() if not ungrouped(k)}


def differing_result_keys(records: Sequence[RunRecord]) -> list[str]:
    """Dotted config keys (seed and result-neutral keys left out) whose value differs between
    ``records`` (the first against each other), in order of first finding; a key that some
    run's config lacks (added to a schema since that run) is not counted."""
    if not records:
        return []
    first = result_config(records[0])
    out: list[str] = []
    for record in records[1:]:
        other = result_config(record)
        for key in differing_keys(first, other):
            if key not in out and _has(first, key) and _has(other, key):
                out.append(key)
    return out
