"""Name -> callable registries, so configs can refer to losses and samplers by name."""

from __future__ import annotations

from typing import Callable, Dict, Iterator, TypeVar

F = TypeVar("F", bound=Callable)


class Registry:
    """A mapping from config names to callables.

    ``get`` of an unknown name raises a ``ValueError`` that lists every valid name, so a
    typo in a config fails before any compute starts.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items and self._items[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = fn
            return fn

        return decorator

    def get(self, name: str) -> Callable:
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


LOSSES = Registry("loss")
SAMPLERS = Registry("sampler")
