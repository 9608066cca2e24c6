"""Name -> class registries that refuse duplicates (parts are chosen by name from configs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry:
    """A registry of swappable parts of one kind (e.g. guidance)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator that registers the class under ``name``; a duplicate name is an error."""

        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered ({self._items[name].__name__})")
            self._items[name] = cls
            return cls

        return deco

    def get(self, name: str) -> type:
        """The class registered as ``name``; an unknown name is a :class:`ConfigError`."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"Unknown {self.kind} {name!r}; choose one of: {known}.") from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)
