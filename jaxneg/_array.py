"""Array helpers shared by every layer (losses, samplers, gradcache): no layer's own logic."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def l2_normalize(x, axis: int = -1, eps: float = 1e-12):
    """``x / max(||x||, eps)`` computed in (at least) fp32, returned in ``x.dtype`` (finite gradient at 0)."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    inv = lax.rsqrt(jnp.maximum(jnp.sum(x32 * x32, axis=axis, keepdims=True), eps * eps))
    return (x32 * inv).astype(x.dtype)


def vma(x) -> frozenset:
    """The mesh axes over which ``x`` varies inside ``shard_map`` (empty outside)."""
    t = jax.typeof(x)
    mat = getattr(t, "manual_axis_type", None)  # jax >= 0.9
    if mat is not None:
        return frozenset(mat.varying)
    return frozenset(getattr(t, "vma", ()))  # jax 0.7 - 0.8


def vary_like(tree, *refs):
    """Give the leaves of ``tree`` the device-varying mesh axes of ``refs`` (inside ``shard_map``).

    A ``lax.scan`` carry must keep its type; a carry started from constants but updated
    from device-varying inputs would not. Outside ``shard_map`` this is the identity.
    """
    axes = frozenset().union(*(vma(r) for r in jax.tree.leaves(refs)))

    def one(x):
        missing = tuple(sorted(axes - vma(x)))
        return lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(one, tree) if axes else tree
