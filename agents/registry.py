"""Name → class registries that third-party packages extend through entry points.

A package adds a scenario by declaring, in its pyproject.toml,

    [project.entry-points."myriad.scenarios"]
    my_game = "my_package.games:MyGame"

and likewise `myriad.kinds` for agent kinds. Entry points are read once, on the first lookup of a
name that is not built in, so importing Myriad stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")


class UnknownName(LookupError):
    """A name that no registry entry answers to; the message lists the known ones."""


class Registry(Generic[T]):
    """Classes of one family (scenarios, agent kinds) by name."""

    def __init__(self, family: str, group: str) -> None:
        self.family = family
        self.group = group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {sorted(self._entries)})"

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: `@KINDS.register("level_k")`."""

        def add(entry: T) -> T:
            if self._entries.get(name, entry) is not entry:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise UnknownName(f"unknown {self.family} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.group):
            if point.name not in self._entries:
                self.register(point.name)(point.load())
