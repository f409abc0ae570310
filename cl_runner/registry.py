"""A small generic registry mapping component names to factories and their config schemas.

An entry is *declared* (name, config dataclass, the module that implements it) in a module
that imports no torch (``<package>/schemas.py``), so that Hydra can compose and validate a
config, and ``cl-run --help`` can answer, without importing PyTorch. The implementing module
*registers* the factory; it is imported the first time the factory is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, is_dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    """One component: its name, the dataclass schema of its config, the module registering
    its factory (``None`` for an entry registered directly) and the factory once registered."""

    name: str
    config: type
    module: str | None = None
    registered: Callable[..., T] | None = field(default=None, repr=False)
    kind: str = "component"

    @property
    def factory(self) -> Callable[..., T]:
        """The factory, importing :attr:`module` first when it has not registered it yet.

        Raises:
            LookupError: the module was imported but registers no factory under this name.
        """
        if self.registered is None and self.module is not None:
            importlib.import_module(self.module)
        if self.registered is None:
            raise LookupError(f"{self.kind} {self.name!r} is declared in module {self.module!r}, "
                              f"which registers no factory for it")
        return self.registered


def _check_schema(kind: str, name: str, config: type) -> None:
    if not is_dataclass(config) or "name" not in config.__dataclass_fields__:
        raise ValueError(f"{kind} {name!r}: config must be a dataclass with a 'name' field")


class Registry(Generic[T]):
    """Name -> (factory, config dataclass) for one kind of component (strategy, model, ...).

    Usage::

        STRATEGIES = Registry("strategy")
        # in strategies/schemas.py (no torch): the name, its schema, where it is implemented
        STRATEGIES.declare("naive", config=NaiveConfig, module="cl_runner.strategies.naive")

        # in strategies/naive.py
        @STRATEGIES.register("naive", config=NaiveConfig)
        class Naive(Strategy): ...

        strategy = STRATEGIES.build(cfg, model=model)  # cfg: a NaiveConfig instance

    ``register`` without a prior ``declare`` adds an entry directly (its module is the
    caller's, already imported). The config dataclass of every entry must have a ``name``
    field; ``build`` dispatches on it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def declare(self, name: str, *, config: type, module: str) -> None:
        """Declare ``name`` with its config schema, implemented (registered) in ``module``,
        which is imported only when the factory is first needed.

        Raises:
            ValueError: the name is taken, or ``config`` is not a dataclass with a ``name`` field.
        """
        _check_schema(self.kind, name, config)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already declared")
        self._entries[name] = Entry(name, config, module, kind=self.kind)

    def register(self, name: str, *, config: type) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` with its config schema (the
        declared one, when ``name`` was declared).

        Raises:
            ValueError: the name already has a factory, ``config`` differs from the declared
                schema, or ``config`` is not a dataclass with a ``name`` field.
        """
        _check_schema(self.kind, name, config)
        declared = self._entries.get(name)
        if declared is not None and declared.config is not config:
            raise ValueError(f"{self.kind} {name!r} is declared with config "
                             f"{declared.config.__name__}, registered with {config.__name__}")

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            entry = self._entries.get(name)
            if entry is not None and entry.registered is not None:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if entry is None:
                entry = self._entries[name] = Entry(name, config, kind=self.kind)
            entry.registered = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        """Sorted names of all declared or registered entries."""
        return sorted(self._entries)

    def get(self, name: str) -> Entry[T]:
        """The entry registered under ``name`` (its module is imported by ``entry.factory``).

        Raises:
            KeyError: unknown name; the message lists the valid names.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; valid options: {', '.join(self.names())}"
            ) from None

    def build(self, cfg: Any, **kwargs: Any) -> T:
        """Build the component named by ``cfg.name`` as ``factory(cfg, **kwargs)``."""
        return self.get(cfg.name).factory(cfg, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())
