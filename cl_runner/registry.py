"""A small generic registry mapping component names to factories and their config schemas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: its factory and the dataclass schema of its config."""

    name: str
    factory: Callable[..., T]
    config: type


class Registry(Generic[T]):
    """Name -> (factory, config dataclass) for one kind of component (strategy, model, ...).

    Usage::

        STRATEGIES = Registry("strategy")

        @STRATEGIES.register("naive", config=NaiveConfig)
        class Naive(Strategy): ...

        strategy = STRATEGIES.build(cfg, model=model)  # cfg: a NaiveConfig instance

    The config dataclass of every entry must have a ``name`` field; ``build`` dispatches on it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, config: type) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` with its config schema.

        Raises:
            ValueError: the name is taken, or ``config`` is not a dataclass with a ``name`` field.
        """
        if not is_dataclass(config) or "name" not in config.__dataclass_fields__:
            raise ValueError(f"{self.kind} {name!r}: config must be a dataclass with a 'name' field")

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, factory, config)
            return factory

        return decorator

    def names(self) -> list[str]:
        """Sorted names of all registered entries."""
        return sorted(self._entries)

    def get(self, name: str) -> Entry[T]:
        """The entry registered under ``name``.

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

    def __iter__(self):
        return iter(self._entries.values())
