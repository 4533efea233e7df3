"""What a sweep is: :class:`Sweep`, :class:`Part`, :class:`Analysis`, and their expansion into validated points.

A sweep config is a module whose ``get_config(arg)`` returns a :class:`Sweep`: a base run
config (``experiments.train``'s schema), a ``grid`` ``{field: values}`` whose Cartesian
product is swept, ``zip`` groups ``{field: values, other: values}`` whose fields vary
together (batch size with the step count that keeps the epochs fixed, say), further
:class:`Part` s (more points on a changed base), derived ``columns`` (Python expressions of
config fields) and the :class:`Analysis` fits to make at the end (each on the runs its
``where`` expression selects). :func:`expand` turns it into :class:`Point` s, every one
validated, before anything runs; a bad field or value fails naming the point.

This module only describes; :mod:`experiments.sweep` runs a sweep (planning, backends,
progress, analysis) and holds its command line.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Mapping, Sequence

import ml_collections

from experiments import config_lib
from jaxneg import analysis, results, rundir, scaling

Analysis = analysis.Analysis  # sweep configs build experiments.sweep.Analysis(x=..., y=...)


@dataclasses.dataclass
class Part:
    """More points: the base config changed by ``overrides``, then its own ``grid`` × ``zip``;
    their names start with ``label``, and their configs record it as ``tags.part`` (a column
    analyses can group and select by; the main grid's points have ``""``)."""

    label: str
    overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)
    grid: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    zip: Sequence[Mapping[str, Sequence]] | Mapping[str, Sequence] = ()


@dataclasses.dataclass
class Sweep:
    """What to sweep: ``base`` run config, ``grid`` axes, ``zip`` groups, more ``parts``, derived
    ``columns`` (``{name: Python expression of config fields, or a function of a run's flat config}``, for
    analyses; e.g. :data:`experiments.tasks.sources.COLUMNS`) and ``analyses``."""

    base: ml_collections.ConfigDict
    grid: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    zip: Sequence[Mapping[str, Sequence]] | Mapping[str, Sequence] = ()
    analyses: Sequence[Analysis] = ()
    description: str = ""
    parts: Sequence[Part] = ()
    columns: Mapping[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Point:
    name: str                                  # run directory name, from the swept values
    overrides: dict                            # field -> value
    config: ml_collections.ConfigDict


# ----------------------------------------------------------------------------- expansion


get_field = config_lib.get_field


def _axes(sweep) -> list[list[dict]]:
    axes, seen = [], set()
    groups = [g for g in ([sweep.zip] if isinstance(sweep.zip, Mapping) else list(sweep.zip)) if g]
    for field, values in sweep.grid.items():
        axes.append([{field: v} for v in _values(f"grid[{field!r}]", values)])
    for i, group in enumerate(groups):
        lengths = {f: len(_values(f"zip[{i}][{f!r}]", v)) for f, v in group.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"sweep: the fields of zip group {i} must have equal lengths, got {lengths}")
        axes.append([dict(zip(group, vals)) for vals in zip(*group.values())])
    for axis in axes:
        for field in axis[0]:
            if field in seen:
                raise ValueError(f"sweep: field {field!r} is swept twice (grid and zip axes must be disjoint)")
            seen.add(field)
    return axes


def _values(where, values):
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"sweep: {where} must be a non-empty list of values, got {values!r}")
    return values


def _fmt(v) -> str:
    if isinstance(v, float):
        text = f"{v:g}"
    elif isinstance(v, (tuple, list)):
        text = "x".join(_fmt(x) for x in v)
    elif isinstance(v, Mapping) or hasattr(v, "to_dict"):
        d = v.to_dict() if hasattr(v, "to_dict") else dict(v)
        text = "+".join(f"{k}-{_fmt(x)}" for k, x in sorted(d.items())) or "none"
    else:
        text = str(v) if v != "" else "none"
    return analysis.file_stem(text)


def _short_names(fields):
    last = [f.split(".")[-1] for f in fields]
    return {f: (s if last.count(s) == 1 else f) for f, s in zip(fields, last)}


def expand(sweep: Sweep, *, num_devices: int | None = None) -> list[Point]:
    """Every point of ``sweep`` (grid × zip groups), each validated; names are unique.

    ``num_devices``: the device count to validate batch divisibility against (default the
    point's ``num_devices``, or 1 when that is 0 = all; ``experiments.train`` checks again).
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep: get_config must return an experiments.sweep.Sweep, got {type(sweep).__name__}")
    parts = list(sweep.parts)
    if sweep.grid or sweep.zip or not parts:
        parts.insert(0, Part("", {}, sweep.grid, sweep.zip))
    points, names = [], {}
    for part in parts:
        if not isinstance(part, Part):
            raise TypeError(f"sweep: parts must be experiments.sweep.Part, got {type(part).__name__}")
        points += _expand_part(sweep, part, names, num_devices)
    return points


def _expand_part(sweep: Sweep, part: Part, names: dict, num_devices) -> list[Point]:
    axes = _axes(part)
    fields = [f for axis in axes for f in axis[0]]
    short = _short_names(fields)
    points = []
    for combo in itertools.product(*axes):
        overrides = {**part.overrides, **{k: v for piece in combo for k, v in piece.items()}}
        name = ",".join([part.label] * bool(part.label) + [f"{short[f]}={_fmt(overrides[f])}" for f in fields]) or "run"
        config = copy.deepcopy(sweep.base)
        for field, value in overrides.items():
            config_lib.set_field(config, field, value, f"sweep point {name}")
        config.progress = False
        config.tags.part = part.label  # (analyses group and select by it: "tags.part")
        try:
            config_lib.validate(config, num_devices or max(1, config.num_devices))
        except ValueError as e:
            raise ValueError(f"sweep point {name}: {e}") from None
        if name in names:
            raise ValueError(f"sweep: points {names[name]} and {overrides} have the same name {name!r}")
        names[name] = overrides
        points.append(Point(name, overrides, config))
    return points


def load_sweep(spec: str) -> Sweep:
    """Import ``path/to/config.py[:arg]`` and return its ``get_config(arg)``, which must be a :class:`Sweep`."""
    obj = config_lib.load_file(spec)
    if isinstance(obj, ml_collections.ConfigDict):
        raise config_lib.ConfigError(f"--config {spec} is a run config, not a sweep; run it with python -m "
                                     f"experiments.train --config {spec} --workdir DIR, or wrap it in "
                                     f"experiments.sweep.Sweep(base=...)")
    if not isinstance(obj, Sweep):
        raise config_lib.ConfigError(f"--config {spec}: get_config must return an experiments.sweep.Sweep, "
                                     f"got {type(obj).__name__}")
    return obj


def columns_row(sweep: Sweep, config) -> dict:
    """The flat config of a point with the sweep's derived columns (as an analysis sees them)."""
    row = rundir.flat(config_lib.config_json(config))
    for name, expr in sweep.columns.items():
        try:
            row[name] = results.evaluate_expression(expr, row)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"sweep column {name!r} = {expr!r}: {type(e).__name__}: {e}") from None
    return row


def check_analysis(a: Analysis, points, sweep: Sweep | None = None):
    """``a`` refers to config fields or columns of the sweep, selects some point, and has a valid law and bootstrap."""
    scaling.LAWS.get(a.law)
    row = columns_row(sweep, points[0].config) if sweep is not None else rundir.flat(points[0].config.to_dict())
    for field in filter(None, (a.x, a.group)):
        if field not in row:
            raise ValueError(f"sweep analysis: {field!r} is not a config field or a column of the sweep")
    if a.where:
        try:
            selected = [p for p in points if results.evaluate_expression(a.where, columns_row(sweep, p.config))]
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"sweep analysis where={a.where!r}: {type(e).__name__}: {e}") from None
        if not selected:
            raise ValueError(f"sweep analysis where={a.where!r} selects no point")
    if not isinstance(a.n_bootstrap, int) or a.n_bootstrap < 0 or a.n_bootstrap == 1:
        raise ValueError(f"sweep analysis: n_bootstrap must be 0 or an integer >= 2, got {a.n_bootstrap!r}")


__all__ = ["Analysis", "Part", "Point", "Sweep", "check_analysis", "columns_row", "expand", "get_field",
           "load_sweep"]
