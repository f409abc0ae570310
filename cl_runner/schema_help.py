"""Help text from config dataclasses: each field's type, allowed values, default and the
description its class docstring gives (the Google-style ``Attributes:`` section, the one
place the project documents a key) or ``field(metadata={"help": ...})``. Used by ``cl-run
--help`` (the keys of the chosen options), ``cl-analyze --help`` and ``cl-summarize --help``.
Standard library only: ``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import textwrap
import types
import typing
from typing import Any

#: width of the help text, and the column descriptions start at
WIDTH, DESCRIPTION_COLUMN = 96, 30


def field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the ``Attributes:`` sections of ``cls``'s docstring and
    of its bases' (a subclass's description wins), Sphinx roles and double backquotes removed;
    ``field(metadata={"help": ...})`` wins over both."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs.update(_attributes_section(inspect.cleandoc(klass.__dict__.get("__doc__") or "")))
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                docs[f.name] = str(f.metadata["help"])
    return docs


def _attributes_section(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    current, base, inside = None, None, False
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:  # the next section
            break
        entry = re.match(r"(\w+)(?: \([^)]*\))?:\s*(.*)", line.strip())
        if entry and (base is None or indent == base):
            base, current = indent, entry[1]
            out[current] = entry[2]
        elif current is not None:
            out[current] += " " + line.strip()
    return {k: plain(v) for k, v in out.items()}


def plain(text: str) -> str:
    """``text`` without reST markup: ``:class:`~a.B``` -> ``B``, double backquotes dropped."""
    text = re.sub(r":\w+:`~?([^`]*?)`", lambda m: m[1].rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def type_text(kind: Any) -> str:
    """A field type for people: an enum's values ``a|b|c``, ``int or null``, ``list of int``."""
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "|".join(str(m.value) for m in kind)
    if kind is bool:
        return "true|false"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        text = " or ".join(type_text(a) for a in rest)
        return f"{text} or null" if len(rest) < len(args) else text
    if origin in (list, tuple):
        return f"list of {type_text(args[0])}" if args else "list"
    if kind is Any:
        return "any"
    return getattr(kind, "__name__", str(kind))


def default_text(f: dataclasses.Field) -> str | None:
    """The field's default as YAML would write it (None when it has none)."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if dataclasses.is_dataclass(value) or (isinstance(value, str) and value == "???"):
        return None
    if isinstance(value, list):
        return str([v.value if isinstance(v, enum.Enum) else v for v in value])
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe_fields(cls: type, prefix: str = "", skip: tuple[str, ...] = ("name",)) -> list[str]:
    """Help lines of every field of dataclass ``cls`` (nested dataclasses too, as
    ``prefix.key.sub``): ``  key  TYPE = DEFAULT`` then the description, wrapped at
    :data:`WIDTH` from column :data:`DESCRIPTION_COLUMN`. Fields named in ``skip`` and fields
    without a default (a run's groups) are left out."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        key = f"{prefix}{f.name}"
        kind = hints.get(f.name, Any)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            lines += describe_fields(kind, f"{key}.", skip=())
            continue
        if f.default == "???" or (f.default is dataclasses.MISSING
                                  and f.default_factory is dataclasses.MISSING):
            continue  # no default: a run's config group (benchmark, model, ...)
        default = default_text(f)
        head = f"  {key}  {type_text(kind)}" + (f" = {default}" if default is not None else "")
        text = docs.get(f.name, "")
        if not text:
            lines.append(head)
            continue
        indent = " " * DESCRIPTION_COLUMN
        if len(head) < DESCRIPTION_COLUMN - 1:
            first = head.ljust(DESCRIPTION_COLUMN)
            lines += textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=indent)
        else:
            lines.append(head)
            lines += textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)
    return lines
