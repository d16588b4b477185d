"""A tiny name -> object registry used by every pluggable seam.

Config files name components (``search_space.name: darts``); code looks them up
here instead of branching on names, so adding a component touches one module
and one YAML file.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from nas_cli.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps config names to builders; unknown names raise a one-line ConfigError."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
