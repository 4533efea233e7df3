"""A FIFO memory of negatives (MoCo queue, cross-batch memory bank) as an explicit state pytree.

Besides the keys, every slot records the id of the example it came from (so an anchor can be
kept from its own earlier embedding, a stale copy of its positive) and the step it was pushed
at (so a run can report how old its negatives are).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxneg import _checks as C
from jaxneg._array import l2_normalize

EMPTY = -1  # ``ids`` / ``steps`` of a slot that holds no pushed key (empty or randomly initialised)


class Queue(NamedTuple):
    """``keys [S, D]``, ``ptr`` (next slot to overwrite), ``count`` (slots filled, ``<= S``),
    ``ids [S]`` (the example each key came from) and ``steps [S]`` (the step it was pushed at);
    both ``-1`` (:data:`EMPTY`) where no key was pushed."""

    keys: jax.Array
    ptr: jax.Array
    count: jax.Array
    ids: jax.Array
    steps: jax.Array

    @property
    def mask(self):
        """``[S]`` bool: the slots holding a pushed (or randomly initialised) key."""
        return jnp.arange(self.keys.shape[0]) < self.count

    def excludes(self, ids):
        """``[B, S]`` bool: True where slot ``s`` holds an earlier key of example ``ids[b]`` itself."""
        ids = jnp.asarray(ids, jnp.int32)
        return (self.ids[None, :] == ids[:, None]) & (ids[:, None] != EMPTY)


def queue_init(size: int, dim: int, *, key=None, dtype=jnp.float32) -> Queue:
    """An empty queue of ``size`` keys of dimension ``dim``.

    With ``key`` the slots start as random unit vectors and count as filled (MoCo's
    initialisation, so the loss sees ``size`` negatives from step 0); without it they are
    zeros and ``count = 0``, and ``Queue.mask`` tells which slots hold real keys.
    """
    fn = "queue_init"
    size, dim = C.integer(fn, "size", size, 1), C.integer(fn, "dim", dim, 1)
    empty = jnp.full((size,), EMPTY, jnp.int32)
    if key is None:
        return Queue(jnp.zeros((size, dim), dtype), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), empty, empty)
    keys = l2_normalize(jax.random.normal(key, (size, dim), jnp.float32)).astype(dtype)
    return Queue(keys, jnp.zeros((), jnp.int32), jnp.full((), size, jnp.int32), empty, empty)


def queue_push(state: Queue, keys, *, size=None, ids=None, step=None) -> Queue:
    r"""Enqueue ``keys [n, D]`` (``n <= S``), overwriting the oldest entries (FIFO).

    Slots ``ptr, ptr + 1, ..., ptr + n - 1 (mod S)`` receive the new keys, then
    ``ptr <- (ptr + n) mod S`` and ``count <- min(count + n, S)``. The keys are
    ``stop_gradient``-ed (a memory bank holds constants) and cast to the queue's dtype.

    ``size`` (optional, ``n <= size <= capacity``, may be traced): use only the first ``size``
    slots as the queue (``S = size`` above), so queues of different lengths can share one
    array shape, e.g. the members of a vectorised sweep; the slots beyond it stay masked.
    ``ids`` (optional ``[n]`` int) and ``step`` (optional int, may be traced) are recorded in
    the slots' ``ids`` and ``steps`` (else :data:`EMPTY`).

    References:
      He et al., *Momentum Contrast for Unsupervised Visual Representation Learning*, CVPR 2020.
      Wang et al., *Cross-Batch Memory for Embedding Learning*, CVPR 2020.
    """
    fn = "queue_push"
    if not isinstance(state, Queue):
        raise ValueError(f"{fn}: state must be a Queue from queue_init, got {type(state).__name__}")
    s, d = state.keys.shape
    keys = C.as_float_array(fn, "keys", keys, 2, f"[n, D] with D={d}")
    if keys.shape[1] != d or keys.shape[0] > s:
        raise ValueError(f"{fn}: keys must have shape [n, D] with n <= {s}, D={d}, got {list(keys.shape)}")
    n = keys.shape[0]
    if ids is None:
        ids = jnp.full((n,), EMPTY, jnp.int32)
    ids = jnp.asarray(ids)
    if ids.shape != (n,) or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{fn}: ids must be int of shape [n] = [{n}], got {ids.dtype} {list(ids.shape)}")
    if size is not None:
        C.scalar(fn, "size", size, low=n, high=s, low_inclusive=True)
        s = jnp.asarray(size, jnp.int32)
    slots = (state.ptr + jnp.arange(n, dtype=jnp.int32)) % s
    new = state.keys.at[slots].set(lax.stop_gradient(keys).astype(state.keys.dtype))
    steps = state.steps.at[slots].set(jnp.asarray(EMPTY if step is None else step, jnp.int32))
    return Queue(new, (state.ptr + n) % s, jnp.minimum(state.count + n, s), state.ids.at[slots].set(ids.astype(jnp.int32)),
                 steps)


def queue_stats(state: Queue, step, *, size=None, valid=None) -> dict:
    """Diagnostics of a queue at ``step``: ``fill`` (slots pushed with a step / ``size``, default the
    capacity; with ``size`` the slots past it are not counted, as in :func:`queue_push`) and ``age``
    (mean of ``step - steps[s]`` over those slots, in steps; 0 when none is). With ``valid`` (``[S]``
    bool, the slots a caller offers as negatives now, e.g. a bank still warming up offers none), ``age``
    is over the pushed slots it offers, or over every pushed slot while it offers none. ``step``,
    ``size`` and ``valid`` may be traced."""
    capacity = state.keys.shape[0]
    s = capacity if size is None else size
    pushed = (state.steps != EMPTY) & (jnp.arange(capacity) < s)
    counted = pushed if valid is None else jnp.where(jnp.any(pushed & valid), pushed & valid, pushed)
    age = jnp.sum(jnp.where(counted, step - state.steps, 0)) / jnp.maximum(jnp.sum(counted), 1)
    return {"fill": jnp.sum(pushed) / jnp.asarray(s, jnp.float32), "age": age.astype(jnp.float32)}


def instance_init(num_items: int, dim: int, *, key, dtype=jnp.float32) -> Queue:
    """An instance memory (Wu et al. 2018): one slot per item, ``keys [N, D]`` random unit vectors
    (as the paper's memory starts), ``ids = arange(N)`` (slot ``i`` holds item ``i``), every slot
    counted (``count = N``) and none yet written (``steps = -1``). It is a :class:`Queue`, so
    ``mask``, ``excludes(ids)`` (an anchor's own slot) and :func:`queue_stats` (the share of slots
    written, and their mean age) apply as they do to a FIFO bank; :func:`instance_update` writes it."""
    fn = "instance_init"
    n, dim = C.integer(fn, "num_items", num_items, 1), C.integer(fn, "dim", dim, 1)
    keys = l2_normalize(jax.random.normal(key, (n, dim), jnp.float32)).astype(dtype)
    return Queue(keys, jnp.zeros((), jnp.int32), jnp.full((), n, jnp.int32), jnp.arange(n, dtype=jnp.int32),
                 jnp.full((n,), EMPTY, jnp.int32))


def instance_update(state: Queue, ids, values, *, momentum=0.5, step=None) -> Queue:
    r"""Write ``values [n, D]`` into the slots ``ids [n]`` of an instance memory, in place:

        v_i <- normalize(m v_i + (1 - m) f_i)          (m = ``momentum``, in [0, 1))

    ``values`` are the anchors' embeddings (normalised here first, gradient stopped); ``step``
    (optional, may be traced) is recorded in the written slots' ``steps``. Where ``ids`` repeats
    an item (a batch that straddles two epochs), one of its values is kept.

    Reference: Wu, Xiong, Yu & Lin, *Unsupervised Feature Learning via Non-Parametric Instance
    Discrimination*, CVPR 2018 (Section 3.2; m = 0.5).
    """
    fn = "instance_update"
    if not isinstance(state, Queue):
        raise ValueError(f"{fn}: state must be a Queue from instance_init, got {type(state).__name__}")
    s, d = state.keys.shape
    values = C.as_float_array(fn, "values", values, 2, f"[n, D] with D={d}")
    if values.shape[1] != d:
        raise ValueError(f"{fn}: values must have shape [n, D] with D={d}, got {list(values.shape)}")
    ids = jnp.asarray(ids)
    if ids.shape != (values.shape[0],) or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{fn}: ids must be int of shape [n] = [{values.shape[0]}], got {ids.dtype} {list(ids.shape)}")
    C.scalar(fn, "momentum", momentum, low=0.0, high=1.0, low_inclusive=True, high_inclusive=False)
    f = l2_normalize(lax.stop_gradient(values).astype(jnp.float32))
    m = jnp.asarray(momentum, jnp.float32)
    new = l2_normalize(m * state.keys[ids].astype(jnp.float32) + (1.0 - m) * f).astype(state.keys.dtype)
    steps = state.steps if step is None else state.steps.at[ids].set(jnp.asarray(step, jnp.int32))
    return state._replace(keys=state.keys.at[ids].set(new), steps=steps)
