"""A MoCo-style FIFO memory of negatives as an explicit state pytree."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxneg import _checks as C
from jaxneg._array import l2_normalize


class Queue(NamedTuple):
    """``keys [S, D]``, ``ptr`` (next slot to overwrite) and ``count`` (slots filled, ``<= S``)."""

    keys: jax.Array
    ptr: jax.Array
    count: jax.Array

    @property
    def mask(self):
        """``[S]`` bool: the slots holding a pushed (or randomly initialised) key."""
        return jnp.arange(self.keys.shape[0]) < self.count


def queue_init(size: int, dim: int, *, key=None, dtype=jnp.float32) -> Queue:
    """An empty queue of ``size`` keys of dimension ``dim``.

    With ``key`` the slots start as random unit vectors and count as filled (MoCo's
    initialisation, so the loss sees ``size`` negatives from step 0); without it they are
    zeros and ``count = 0``, and ``Queue.mask`` tells which slots hold real keys.
    """
    fn = "queue_init"
    size, dim = C.integer(fn, "size", size, 1), C.integer(fn, "dim", dim, 1)
    if key is None:
        return Queue(jnp.zeros((size, dim), dtype), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    keys = l2_normalize(jax.random.normal(key, (size, dim), jnp.float32)).astype(dtype)
    return Queue(keys, jnp.zeros((), jnp.int32), jnp.full((), size, jnp.int32))


def queue_push(state: Queue, keys, *, size=None) -> Queue:
    r"""Enqueue ``keys [n, D]`` (``n <= S``), overwriting the oldest entries (FIFO).

    Slots ``ptr, ptr + 1, ..., ptr + n - 1 (mod S)`` receive the new keys, then
    ``ptr <- (ptr + n) mod S`` and ``count <- min(count + n, S)``. The keys are
    ``stop_gradient``-ed (a memory bank holds constants) and cast to the queue's dtype.

    ``size`` (optional, ``n <= size <= capacity``, may be traced): use only the first ``size``
    slots as the queue (``S = size`` above), so queues of different lengths can share one
    array shape, e.g. the members of a vectorised sweep; the slots beyond it stay masked.

    References:
      He et al., *Momentum Contrast for Unsupervised Visual Representation Learning*, CVPR 2020.
    """
    fn = "queue_push"
    if not isinstance(state, Queue):
        raise ValueError(f"{fn}: state must be a Queue from queue_init, got {type(state).__name__}")
    s, d = state.keys.shape
    keys = C.as_float_array(fn, "keys", keys, 2, f"[n, D] with D={d}")
    if keys.shape[1] != d or keys.shape[0] > s:
        raise ValueError(f"{fn}: keys must have shape [n, D] with n <= {s}, D={d}, got {list(keys.shape)}")
    n = keys.shape[0]
    if size is not None:
        C.scalar(fn, "size", size, low=n, high=s, low_inclusive=True)
        s = jnp.asarray(size, jnp.int32)
    slots = (state.ptr + jnp.arange(n, dtype=jnp.int32)) % s
    new = state.keys.at[slots].set(lax.stop_gradient(keys).astype(state.keys.dtype))
    return Queue(new, (state.ptr + n) % s, jnp.minimum(state.count + n, s))
