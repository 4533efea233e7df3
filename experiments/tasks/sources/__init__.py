r"""Where a run's negatives come from: one registered :class:`Source` per kind, for both tasks.

A source is the one home of everything a kind of negative needs: its config and member fields, its
rules, its state (a :class:`Bank` of stale keys: init, push, which slots count), how many negatives
per anchor a config gives (``results.csv``'s ``negatives_per_anchor``), how the main job sets a run
to ``n`` of them, and what its runs report. Every module of this package is imported (and so
registered) when the package is: adding a source is one new module here, ending in
``register(Source(...))``.

=============  =======  ==========================================================================
``batch``      views    every in-batch view of the other examples (``2B - 2`` with NT-Xent)
``subsampled`` views    ``n`` random in-batch negatives per anchor (``negatives.subsample``)
``memory``     views    the batch plus a FIFO bank of the encoder's own recent embeddings (Wang et al.
                        2020; ``negatives.memory``)
``queue``      views    MoCo's queue of a momentum encoder's keys (He et al. 2020; ``moco.queue_size``)
``instance``   views    one slot per training example (Wu et al. 2018; ``negatives.instance``)
``in-batch``   pairs    the other queries' documents only (``k = 0``)
``uniform``    pairs    ``k`` documents per query drawn uniformly
``popularity`` pairs    ``K`` documents for the batch drawn ``∝ count^0.75``, with log-Q
``hard``       pairs    the ``k`` top-scored documents of a refreshed index (ANCE)
``filtered``   pairs    ``hard`` without candidates scored above 0.95 of the positive (NV-Retriever)
``simans``     pairs    ``k`` of the top 64 sampled around the positive's score (SimANS)
``oracle``     pairs    ``hard`` that never mines a known duplicate of the positive
=============  =======  ==========================================================================

Every config draws from one source, :func:`of` (a pairs config whose sampler settings no source
registers gets an unregistered one named after its sampler).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pkgutil
from typing import Any, Callable, Mapping, NamedTuple

import ml_collections

from experiments.tasks.common import MemberField  # noqa: F401  (sources declare their member fields with it)
from jaxneg import samplers
from jaxneg.registry import Registry


class Pushed(NamedTuple):
    """What a step offers a bank after the update: ``values [n, D]`` (every device's rows, in global batch
    order, centred as the loss saw them; no gradient), the examples they came from ``ids [n]``, the ``step``."""

    values: Any
    ids: Any
    step: Any


@dataclasses.dataclass(frozen=True)
class Bank:
    """A store of stale keys beside the parameters (a :class:`jaxneg.samplers.Queue`, replicated on every
    device), stop-gradient.

    ``state``: its key in the run's state; ``holds``: what each step pushes, ``"embeddings"`` (the encoder's
    centred view-1 embeddings) or ``"keys"`` (MoCo's key encoder's); ``init(config, num_train, dim, key)``:
    the empty bank; ``push(bank, pushed: Pushed, hp)``: the bank after a step; ``valid(bank, step, hp)``:
    ``[S]`` bool, the slots that count as negatives at ``step`` (besides these, an anchor never meets an
    earlier key of its own example); ``size(bank, hp, config)``: the slots its fill is counted over (``config``:
    the step's, whose member fields are read from ``hp``).
    """

    state: str
    init: Callable
    push: Callable
    valid: Callable
    size: Callable
    holds: str = "embeddings"


class MainJob(NamedTuple):
    """What the main job fixes when it asks a source for ``n`` negatives per anchor: the ``batch_size``,
    the training ``steps`` and the loss' anchor rows per example (``views``: 2 with NT-Xent)."""

    batch_size: int
    steps: int
    views: int = 2


@dataclasses.dataclass(frozen=True)
class Source:
    """One kind of negatives (see the module docstring for the registered ones).

    ==========================  ======================================================================
    ``name``, ``task``          its name (``negatives_from``) and the task that draws from it
    ``summary``                 one line for reports and the main job's description
    ``uses(config)``            whether a run of ``config`` draws from it
    ``rank``                    of the sources that a config uses, the run's is the one of highest rank
                                (0: the in-batch fallback; 1: a source of its own; 2: a bank, which
                                may also subsample)
    ``count(config)``           negatives per anchor (``results.csv``: ``negatives_per_anchor``)
    ``setting(n, job)``         the config overrides that give each anchor ``n`` negatives in the main
                                job (:class:`MainJob`); None where ``n`` is not one it gives (or raises
                                ``ValueError`` saying which it can give); None: not a main-job source
    ``axis``                    the config field of ``setting`` that follows ``n`` (the main job's swept
                                field, in its run names); its other fields are the same for every ``n``
    ``config``, ``members``     its own config fields ``{dotted: default}`` and :class:`MemberField` s
    ``validate(config, loss)``  its rules (called when ``uses(config)``)
    ``bank``                    its :class:`Bank` of stale keys, or None
    ``bank_only(config)``       whether the in-batch columns other than the positive are dropped
    ``reports``                 diagnostics its runs report that analyses select by (e.g.
                                ``"false_negative_rate"``: of mined negatives, against known duplicates)
    ==========================  ======================================================================
    """

    name: str
    task: str
    summary: str
    uses: Callable
    count: Callable
    rank: int = 1
    setting: Callable | None = None
    axis: str = ""
    config: Mapping = dataclasses.field(default_factory=dict)
    members: tuple = ()
    validate: Callable = lambda config, loss: None
    bank: Bank | None = None
    bank_only: Callable = lambda config: False
    reports: tuple = ()


#: every registered :class:`Source` by name
SOURCES = Registry("source")


def register(source: Source) -> Source:
    """Register ``source`` under its name (one line at the end of a source module)."""
    if source.name in SOURCES and SOURCES.get(source.name) is not source:
        raise ValueError(f"source {source.name!r} is already registered")
    return SOURCES.register(source.name)(source)


def unregister(name: str) -> None:
    """Remove a registered source (tests that register a trial source clean up with it)."""
    SOURCES._items.pop(name, None)


def get(name: str) -> Source:
    """The source ``name``; an unknown name lists the registered ones."""
    return SOURCES.get(name)


def of_task(task: str) -> list[Source]:
    """The registered sources of ``task``, by name."""
    return [s for s in map(SOURCES.get, SOURCES.names()) if s.task == task]


def of(config: ml_collections.ConfigDict) -> Source:
    """The source a run of ``config`` draws its negatives from: of those it uses, the one of highest ``rank``
    (``ValueError`` if none or several of that rank claim it)."""
    registered = of_task(config.task)
    if not registered:  # a task with no sources of its own: its in-batch negatives
        return Source(name="batch", task=config.task, summary="the in-batch negatives", uses=lambda c: True,
                      count=lambda c: c.batch_size - 1)
    found = [s for s in registered if s.uses(config)]
    top = max((s.rank for s in found), default=0)
    found = [s for s in found if s.rank == top]
    if len(found) == 1:
        return found[0]
    if not found and config.task == "pairs":  # sampler settings no registered source names
        return dataclasses.replace(get("uniform"), name=config.sampler.name, summary=f"sampler {config.sampler.name}",
                                   uses=lambda c: False, setting=None, reports=())
    raise ValueError(f"config of task {config.task!r}: {'no source' if not found else 'several sources'} "
                     f"({', '.join(s.name for s in found)}) draw its negatives; each run draws from one")


def negatives_from(row: Mapping) -> str:
    """The name of the source a run draws from (:func:`of`), from its flat config ``row`` (``{dotted field:
    value}``, a row of ``results.csv``): the ``negatives_from`` column of a sweep (``Sweep.columns``)."""
    return of(unflatten(row)).name


def negatives_per_anchor(row: Mapping) -> int:
    """The negatives per anchor of a run, its source's ``count``, from its flat config ``row``: the
    ``negatives_per_anchor`` column of a sweep (``Sweep.columns``)."""
    config = unflatten(row)
    return int(of(config).count(config))


#: the columns every sweep over negatives adds to its results (``Sweep.columns``), computed by the sources
COLUMNS = {"negatives_from": negatives_from, "negatives_per_anchor": negatives_per_anchor}


def unflatten(row: Mapping) -> ml_collections.ConfigDict:
    """A ConfigDict of a flat ``{dotted field: value}`` mapping (a row of ``results.csv``): fields missing
    from the run (NaN) are left out, and keyword groups written as JSON (``"{}"``) are read back."""
    nested: dict = {}
    for key, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            continue
        if isinstance(value, str) and value.startswith("{"):
            value = json.loads(value)
        *groups, leaf = str(key).split(".")
        node = nested
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = value
    return ml_collections.ConfigDict(nested)


def config_fields(task: str) -> dict:
    """``{dotted field: default}`` of every registered source of ``task``."""
    out = {}
    for s in of_task(task):
        for f, d in s.config.items():
            if out.get(f, d) != d:
                raise ValueError(f"sources of task {task!r} declare config.{f} with different defaults")
            out[f] = d
    return out


def member_fields(task: str) -> tuple:
    """The :class:`MemberField` s of every registered source of ``task`` (each field once)."""
    seen, out = set(), []
    for s in of_task(task):
        for m in s.members:
            if m.field not in seen:
                seen.add(m.field)
                out.append(m)
    return tuple(out)


def fifo(size_field: str, hp_name: str) -> dict:
    """A FIFO bank's ``init``, ``push`` and ``size`` whose capacity is the member field ``size_field`` (traced as
    ``hp.<hp_name>``): members of one program share the longest bank's array, each using its first slots."""
    def get_size(config):
        from experiments.config_lib import get_field  # (config_lib imports the sources: read when a bank is made)

        return get_field(config, size_field)

    return {"init": lambda config, num_train, dim, key: samplers.queue_init(get_size(config), dim),
            "push": lambda bank, p, hp: samplers.queue_push(bank, p.values, size=getattr(hp, hp_name), ids=p.ids,
                                                            step=p.step),
            "size": lambda bank, hp, config: getattr(hp, hp_name)}


for _module in pkgutil.iter_modules(__path__):  # every source module registers itself
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["COLUMNS", "Bank", "MainJob", "Pushed", "SOURCES", "Source", "config_fields", "get", "member_fields",
           "negatives_from", "negatives_per_anchor", "of", "of_task", "register", "unflatten", "unregister"]
