"""Input validation shared by the public functions.

Shapes are static under ``jax.jit``, so shape errors are raised at trace time. Scalar
hyper-parameters are checked when they are concrete Python/NumPy values; a traced value
(e.g. a learnable temperature) cannot be inspected and is left to the caller.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

REDUCTIONS = ("mean", "sum", "none")


def _shape_str(shape: Sequence) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def as_float_array(fn: str, name: str, x, ndim: int, dims: str):
    """Return ``x`` as a floating JAX array with ``ndim`` axes, else raise naming ``dims``."""
    if x is None:
        raise ValueError(f"{fn}: {name} is required, expected shape {dims}")
    x = jnp.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must have shape {dims}, got shape {_shape_str(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{fn}: {name} must be floating point, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{fn}: {name} is empty: expected shape {dims} with every axis >= 1, "
                         f"got shape {_shape_str(x.shape)}")
    return x


def as_label_array(fn: str, name: str, labels, size: int, what: str = "B"):
    """Return integer ``labels`` of shape ``[size]``."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != size:
        raise ValueError(
            f"{fn}: {name} must have shape [{what}] = [{size}], got shape {_shape_str(labels.shape)}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{fn}: {name} must be integers, got dtype {labels.dtype}")
    return labels.astype(jnp.int32)


def same_shape(fn: str, name: str, x, ref_name: str, ref) -> None:
    if x.shape != ref.shape:
        raise ValueError(
            f"{fn}: {name} must have the shape of {ref_name} {_shape_str(ref.shape)}, "
            f"got {_shape_str(x.shape)}"
        )


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def scalar(fn: str, name: str, value, *, low=None, high=None, low_inclusive=False, high_inclusive=True):
    """Check a scalar hyper-parameter lies in a range (when it is concrete)."""
    if isinstance(value, (numbers.Number, np.ndarray, np.generic)) or (
        isinstance(value, jax.Array) and is_concrete(value)
    ):
        arr = np.asarray(value)
        if arr.ndim != 0:
            raise ValueError(f"{fn}: {name} must be a scalar, got shape {_shape_str(arr.shape)}")
        v = float(arr)
        ok = np.isfinite(v)
        if low is not None:
            ok &= v >= low if low_inclusive else v > low
        if high is not None:
            ok &= v <= high if high_inclusive else v < high
        if not ok:
            lo = "" if low is None else f"{'>=' if low_inclusive else '>'} {low}"
            hi = "" if high is None else f"{'<=' if high_inclusive else '<'} {high}"
            rng = " and ".join(s for s in (lo, hi) if s) or "finite"
            raise ValueError(f"{fn}: {name} must be {rng}, got {v}")
    elif isinstance(value, jax.Array) and value.ndim != 0:
        raise ValueError(f"{fn}: {name} must be a scalar, got shape {_shape_str(value.shape)}")
    return value


def reduction(fn: str, value: str) -> str:
    if value not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {REDUCTIONS}, got {value!r}")
    return value


def integer(fn: str, name: str, value, low: int) -> int:
    """A Python/NumPy integer ``>= low`` (booleans rejected), as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{fn}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def block_size(fn: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{fn}: block_size must be a positive int or None, got {value!r}")
    return int(value)


def choice(fn: str, name: str, value, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{fn}: {name} must be one of {tuple(options)}, got {value!r}")
    return value


def reduce(values, reduction: str, axis_name=None):
    """Mean/sum over the anchors; with ``axis_name`` over the anchors of every device."""
    if reduction == "none":
        return values
    total = jnp.sum(values)
    if axis_name is not None:
        total = jax.lax.psum(total, axis_name)
    if reduction == "sum":
        return total
    count = values.size * (1 if axis_name is None else jax.lax.axis_size(axis_name))
    return total / count
