"""Name -> callable registries with metadata, so configs can refer to losses and samplers by name.

Every fact about how a registered function is called lives on its entry: the keyword
arguments it accepts (read from its signature once, here) and the metadata given at
registration. Config validation, the trainer's dispatch, the README-table test and the
command line all read entries; none of them keeps its own list of names or probes a
signature.

Loss metadata (:data:`LOSSES`):

* ``inputs``: how a trainer calls it. ``"pair"``: ``fn(query, key, ...)`` (two views or a
  query and its positive); ``"views"``: ``fn(features [N, V, D], labels)``; ``"labelled"``:
  ``fn(embeddings, labels)``; ``"sampled"``: ``fn(query, positive, negatives, ...)``;
  ``"teacher"``: needs teacher scores (not trained by ``experiments.train``).
* ``streams``: accepts ``block_size`` (never forms the ``[B, M]`` logits).
* ``cross_device``: accepts ``axis_name``/``gather`` (negatives of every device).
* ``scale``: ``"temperature"``, ``"logit_scale"`` (with ``logit_bias``) or ``None``.
* ``extra_negatives``: accepts ``negatives`` beside its in-batch ones; ``labels``: accepts
  class/instance ``labels`` that mask false negatives.
* ``static``: the float keywords it needs as Python numbers, because they shape the
  computation (a coefficient of the streamed statistics' structure, a branch). Every other
  float keyword may be a traced array: a vectorised sweep passes the members' values as one
  array, while points that differ in a static keyword run as separate programs.

Sampler metadata (:data:`SAMPLERS`): ``train``: how ``experiments.train`` draws with it for
the pairs task: ``"per_query"`` (``[B, K]`` ids), ``"shared"`` (``[K]`` ids with ``log_q``),
``"mined"`` (from an index of the corpus), or ``None`` (a library tool, not a trainer option).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Dict, Iterator, Mapping, TypeVar

F = TypeVar("F", bound=Callable)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered function: ``fn``, its ``keywords`` (name -> default; required ones absent),
    ``required`` positional/keyword names without default, ``var_keyword`` (takes ``**kwargs``),
    and ``meta`` (the registry's metadata fields, defaults filled in; also readable as attributes)."""

    name: str
    fn: Callable
    keywords: Mapping[str, object]
    required: tuple
    var_keyword: bool
    meta: Mapping[str, object]

    def __getattr__(self, item):
        meta = self.__dict__.get("meta", {})
        if item in meta:
            return meta[item]
        raise AttributeError(item)


class Registry:
    """A mapping from config names to callables and their metadata.

    ``get`` of an unknown name raises a ``ValueError`` that lists every valid name, so a
    typo in a config fails before any compute starts. ``Registry(kind, **fields)`` declares
    the metadata fields with their defaults; ``register(name, **meta)`` sets them.
    """

    def __init__(self, kind: str, **fields):
        self.kind = kind
        self.fields = dict(fields)
        self._items: Dict[str, Entry] = {}

    def register(self, name: str | None = None, **meta) -> Callable[[F], F]:
        unknown = sorted(set(meta) - set(self.fields))
        if unknown:
            raise ValueError(f"{self.kind} registry: unknown metadata {unknown}; fields: {sorted(self.fields)}")

        def decorator(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items and self._items[key].fn is not fn:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            try:  # a registered object need not be a function (scaling laws are records)
                params = inspect.signature(fn).parameters.values()
            except (TypeError, ValueError):
                params = ()
            self._items[key] = Entry(
                key, fn,
                keywords={p.name: p.default for p in params
                          if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty},
                required=tuple(p.name for p in params
                               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty),
                var_keyword=any(p.kind is p.VAR_KEYWORD for p in params),
                meta={**self.fields, **meta})
            return fn

        return decorator

    def info(self, name: str) -> Entry:
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            )
        return self._items[name]

    def get(self, name: str) -> Callable:
        return self.info(name).fn

    def names(self) -> list[str]:
        return sorted(self._items)

    def select(self, **criteria) -> list[str]:
        """Sorted names whose metadata matches every ``field=value`` (a tuple value: any of them)."""
        def ok(entry):
            return all(entry.meta[k] in (v if isinstance(v, tuple) else (v,)) for k, v in criteria.items())

        unknown = sorted(set(criteria) - set(self.fields))
        if unknown:
            raise ValueError(f"{self.kind} registry: unknown metadata {unknown}; fields: {sorted(self.fields)}")
        return [n for n in self.names() if ok(self._items[n])]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


LOSSES = Registry("loss", inputs="pair", streams=False, cross_device=False, scale=None, extra_negatives=False,
                  labels=False, static=())
SAMPLERS = Registry("sampler", train=None)
