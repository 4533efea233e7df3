"""The member table: which config fields may differ between the members of one compiled program, the
program-shape key that groups configs, and each member's traced hyperparameters (``hp``).

A program's members share every shape; their per-member values (:data:`MEMBERS`) reach the step as traced
arrays in one typed record (:func:`hparams`), never through a config: inside the step, tasks see a config in
which those fields raise (:func:`step_config`)."""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from experiments import config_lib, tasks
from experiments.tasks.common import MemberField
from jaxneg import LOSSES, rundir

config_json = config_lib.config_json


#: the loop's own member fields; each task adds its own (``Task.members``): :data:`MEMBERS`
CORE = (
    MemberField("seed", "seed", np.int32),
    MemberField("loss.temperature", "temperature"),
    MemberField("loss.bias", "bias"),
    MemberField("optimizer.learning_rate", "learning_rate"),
    MemberField("optimizer.weight_decay", "weight_decay"),
    MemberField("optimizer.momentum", "momentum"),
    MemberField("progress"),
)
def members() -> tuple:
    """The one table of member fields, the loop's (:data:`CORE`) and every registered task's (``Task.members``):
    ``MEMBER_FIELDS``, :func:`group_key`, ``HParams`` and :func:`step_config` derive from it. Besides these, a
    loss' float keywords may differ (traced per member) unless its registry entry lists them as ``static``
    (:mod:`jaxneg.registry`). Every other field, shapes included, must be equal. (Module attributes
    ``MEMBERS``, ``MEMBER_FIELDS`` and ``HParams`` read it afresh, so a task registered later joins in.)"""
    return CORE + tuple(m for task in tasks.common.all_tasks() for m in tasks.common.member_fields(task))


@functools.lru_cache(maxsize=None)
def _hparams_type(names: tuple):
    return NamedTuple("HParams", [(n, Any) for n in names] + [("loss_kwargs", Any)])


def hparams_type():
    """``HParams``: a member's traced hyperparameters inside the step, a NamedTuple with one field per named
    member field (``hp.temperature``) and ``loss_kwargs`` (``{keyword: value}`` of the float loss keywords
    that differ between the members)."""
    return _hparams_type(tuple(m.name for m in members() if m.name))


def __getattr__(name):  # MEMBERS, MEMBER_FIELDS, HParams: of the tasks registered now
    if name == "MEMBERS":
        return members()
    if name == "MEMBER_FIELDS":
        return tuple(m.field for m in members())
    if name == "HParams":
        return hparams_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _float_kwargs(config) -> dict:
    """The loss keywords that may be traced per member: its float ``loss.kwargs`` that are not ``static``."""
    static = set(LOSSES.info(config.loss.name).static) if config.loss.name in LOSSES else set()  # (validated later)
    return {k: v for k, v in config.loss.kwargs.items() if isinstance(v, float) and k not in static}


def group_key(config: ml_collections.ConfigDict) -> str:
    """Configs with equal keys can run as members of one program (see :data:`MEMBERS`)."""
    flat = rundir.flat(config_json(config))
    for m in members():
        flat.pop(m.field, None)
    for k in _float_kwargs(config):
        flat[f"loss.kwargs.{k}"] = "<float>"
    flat.update(tasks.get(config.task).shape_key(config))  # e.g. a queue or none; their sizes are traced
    return json.dumps(flat, sort_keys=True, default=str)


def traced_loss_kwargs(configs) -> tuple:
    """The float ``loss.kwargs`` whose values differ between ``configs`` (traced per member)."""
    names = sorted(_float_kwargs(configs[0]))
    return tuple(k for k in names if len({c.loss.kwargs[k] for c in configs}) > 1)


def hparams(config: ml_collections.ConfigDict, loss_kwargs: tuple = ()):
    """The member's per-run values (``HParams``), as the arrays the step traces (stacked over members)."""
    return hparams_type()(**{m.name: m.dtype(config_lib.get_field(config, m.field)) for m in members() if m.name},
                          loss_kwargs={k: np.float32(config.loss.kwargs[k]) for k in loss_kwargs})


def make_hp(**values):
    """An ``HParams`` of scalars: ``values`` by name, every other field 0 (tests, calls outside a run)."""
    kind = hparams_type()
    unknown = sorted(set(values) - set(kind._fields))
    if unknown:
        raise ValueError(f"make_hp: unknown hyperparameter(s) {unknown}; valid: {sorted(kind._fields)}")
    return kind(**{f: values.get(f, {} if f == "loss_kwargs" else 0) for f in kind._fields})


class MemberValue:
    """A member field's place in the step's config (:func:`step_config`): reading it as a number raises,
    naming the ``hp`` field that holds each member's value. ``bool()`` answers where every member agrees
    (whether a queue exists at all: the program's shape) and ``int()`` where every member holds the same
    value (a shape); anything else raises."""

    def __init__(self, field: MemberField, values: list):
        self._field, self._values = field, values

    def _refuse(self, *_):
        where = f"read hp.{self._field.name}" if self._field.name else "the step never reads it"
        raise TypeError(f"config.{self._field.field} is a member field: it may differ between the members of one "
                        f"program, so the step's config does not hold it; {where} inside the step")

    def __bool__(self):
        truth = {bool(v) for v in self._values}
        return truth.pop() if len(truth) == 1 else self._refuse()

    def __int__(self):
        return int(self._values[0]) if len(set(self._values)) == 1 else self._refuse()

    __index__ = __int__
    __float__ = __complex__ = __round__ = __abs__ = __neg__ = __pos__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __format__ = __array__ = __jax_array__ = _refuse

    def __eq__(self, other):
        return self._refuse()

    __hash__ = None

    def __repr__(self):
        return f"<member field {self._field.field}: {self._values}>"


def step_config(configs) -> ml_collections.ConfigDict:
    """The config the tasks see inside a program's step: the members' shared config with every member field
    (:data:`MEMBERS`, and the float loss keywords that differ) replaced by a :class:`MemberValue`, so that a
    step that reads ``config.loss.temperature`` where it meant ``hp.temperature`` fails, naming ``hp``,
    instead of training every member at the first one's value."""
    guarded = configs[0].copy_and_resolve_references()
    for m in members():
        *path, leaf = m.field.split(".")
        node = config_lib.get_field(guarded, ".".join(path)) if path else guarded
        with node.ignore_type():
            node[leaf] = MemberValue(m, [config_lib.get_field(c, m.field) for c in configs])
    for k in traced_loss_kwargs(configs):
        with guarded.loss.kwargs.ignore_type():
            guarded.loss.kwargs[k] = MemberValue(MemberField(f"loss.kwargs.{k}", f"loss_kwargs['{k}']"),
                                                 [c.loss.kwargs[k] for c in configs])
    return guarded


def _stack(trees, pad_to=None):
    """Stack members' trees along a new axis 0; arrays of different lengths (MoCo queues, memory banks)
    are zero-padded at the end of each axis to the longest, or to ``pad_to`` (:func:`_padded_shapes` of
    the whole group, so every pass of a group has the compiled step's shapes; :func:`_member` trims
    them back)."""
    def stack(*xs, shape=None):
        xs = [np.asarray(x) for x in xs]
        shape = tuple(max(dims) for dims in zip(*(x.shape for x in xs))) if shape is None else tuple(shape)
        if all(x.shape == shape for x in xs):
            return np.stack(xs)
        return np.stack([np.pad(x, [(0, m - n) for n, m in zip(x.shape, shape)]) for x in xs])

    if pad_to is None:
        return jax.tree.map(stack, *trees)
    return jax.tree.map(lambda shape, *xs: stack(*xs, shape=[int(d) for d in shape]), pad_to, *trees)


def _padded_shapes(trees):
    """The largest shape of each leaf over ``trees`` (members' states), as int arrays (leaves themselves)."""
    return jax.tree.map(lambda *xs: np.array([max(d) for d in zip(*(np.shape(x) for x in xs))], np.int64), *trees)


def _member(tree, i, like=None):
    """Member ``i`` of a stacked tree, trimmed to the shapes of ``like`` (its own state) when given."""
    if like is None:
        return jax.tree.map(lambda x: x[i], tree)
    return jax.tree.map(lambda x, y: x[i][tuple(slice(0, n) for n in np.shape(y))], tree, like)
