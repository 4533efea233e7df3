"""Row and column statistics of a logit matrix, dense or streamed over key blocks.

Every contrastive loss in this package is a cheap function of a few per-row (or
per-column) statistics of the logit matrix

    X_ij = scale * <q_i, k_j> + bias,        q [B, D], k [M, D],

taken over a masked subset of the columns (rows). ``pair_stats`` computes them:

* ``Lse(include, coef)``: ``log sum_{j in S_i} exp(coef * X_ij)`` (``-inf`` if ``S_i`` is empty);
* ``Sum(include, fn)``:   ``sum_{j in S_i} fn(X_ij, same_ij)`` for an elementwise ``fn``.

The subset ``S_i`` is named by ``include`` and built from integer metadata: a position
id per row/column (``pos``: the same id means "this is me") and a label per row/column
(``label``: the same label means "a positive of mine"). A column with ``pos == EXTRA``
is an extra negative that label masking never touches; ``pos == PAD`` is padding.

=========  ==========================================  =============================
include    columns kept for row i                      used by
=========  ==========================================  =============================
``all``    every real column                           SigLIP
``neg``    label differs (so not i itself either)      InfoNCE, NT-Xent, DCL, debiased, HCL
``not_self`` every column but i                        SupCon denominator
``pos``    same label, not i                           SupCon numerator
=========  ==========================================  =============================

With ``block_size=None`` the whole ``[B, M]`` matrix is formed and differentiated by
ordinary autodiff. With ``block_size=b`` the keys are processed ``b`` columns at a time
in a ``lax.scan``: row statistics are carried as a running log-sum-exp (or running sum),
column statistics are complete inside each block. The backward pass is a custom VJP that
recomputes each block's logits (flash-attention style), so peak memory is
``O((B + M) * D + B * b)`` and the ``[B, M]`` matrix never exists. Both paths share the
masking code; the tests check they agree to 1e-5 in value and gradient.

Matmuls run in the input dtype (bf16 is fine) with fp32 accumulation
(``preferred_element_type=float32``); all exponentials and reductions are fp32
(fp64 for fp64 inputs, so gradients can be checked by finite differences).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

EXTRA = -1  # column ``pos`` of an extra negative (never label-masked)
PAD = -2  # column ``pos`` of padding (always excluded)
INCLUDES = ("all", "neg", "not_self", "pos")


class Lse(NamedTuple):
    """``log sum_{j in S_i} exp(coef * X_ij)``."""

    include: str
    coef: float = 1.0


class Sum(NamedTuple):
    """``sum_{j in S_i} fn(X_ij, same_ij)``; ``fn`` must be elementwise and hashable."""

    include: str
    fn: Callable


Spec = Lse | Sum


class Meta(NamedTuple):
    """Integer metadata: row/column position ids and labels (int32)."""

    row_pos: jax.Array
    row_label: jax.Array
    col_pos: jax.Array
    col_label: jax.Array


def _masks(row_pos, row_label, col_pos, col_label):
    """Return ``mask(include)`` and ``same`` for one block (rows x columns)."""
    col_real = (col_pos >= 0)[None, :]
    is_self = row_pos[:, None] == col_pos[None, :]
    same = (row_label[:, None] == col_label[None, :]) & col_real
    valid = (col_pos != PAD)[None, :]

    def mask(include: str):
        if include == "all":
            return valid
        if include == "neg":
            return valid & ~same & ~is_self
        if include == "not_self":
            return valid & ~is_self
        if include == "pos":
            return same & ~is_self
        raise ValueError(f"unknown include {include!r}; valid: {INCLUDES}")

    return mask, same


def acc_dtype(*xs):
    """Accumulation dtype: fp32 for bf16/fp16/fp32 inputs, fp64 for fp64 inputs."""
    return jnp.result_type(jnp.float32, *(x.dtype for x in xs))


def _dot(q, k):
    """``q @ k.T`` accumulated in ``acc_dtype``."""
    return lax.dot_general(q, k, (((1,), (1,)), ((), ())), preferred_element_type=acc_dtype(q, k))


def _safe(m):
    """Replace a ``-inf`` shift by 0 so that ``exp(x - m)`` never sees ``-inf - -inf``."""
    return jnp.where(jnp.isneginf(m), 0.0, m)


def masked_lse(x, mask, axis):
    """Masked log-sum-exp along ``axis``; ``-inf`` (with zero gradient) where all masked."""
    xm = jnp.where(mask, x, -jnp.inf)
    m = lax.stop_gradient(_safe(jnp.max(xm, axis=axis, keepdims=True)))
    s = jnp.sum(jnp.exp(xm - m), axis=axis)
    pos = s > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, s, 1.0)) + jnp.squeeze(m, axis), -jnp.inf)


def _stat(spec: Spec, x, mask, same, axis):
    if isinstance(spec, Lse):
        return masked_lse(spec.coef * x, mask, axis)
    return jnp.sum(jnp.where(mask, spec.fn(x, same), 0.0), axis=axis)


def _validate_specs(specs: Sequence[Spec]) -> Tuple[Spec, ...]:
    specs = tuple(specs)
    for s in specs:
        if not isinstance(s, (Lse, Sum)):
            raise TypeError(f"pair_stats: specs must be Lse or Sum, got {s!r}")
        if s.include not in INCLUDES:
            raise ValueError(f"pair_stats: unknown include {s.include!r}; valid: {INCLUDES}")
    return specs


def pair_stats(
    q,
    k,
    scale,
    bias,
    meta: Meta,
    row_specs: Sequence[Spec] = (),
    col_specs: Sequence[Spec] = (),
    block_size: int | None = None,
):
    """Statistics of ``X = scale * q @ k.T + bias`` along rows and columns.

    Args:
      q: ``[B, D]`` rows (queries/anchors).
      k: ``[M, D]`` columns (keys/candidates).
      scale, bias: scalars (may be traced and differentiated, e.g. a learnable
        temperature or SigLIP's bias).
      meta: ``Meta`` with ``row_pos, row_label [B]`` and ``col_pos, col_label [M]``.
      row_specs: statistics over the columns of each row -> each ``[B]`` (fp32).
      col_specs: statistics over the rows of each column -> each ``[M]`` (fp32).
      block_size: ``None`` for the dense path, else the number of key columns per block.

    Returns:
      ``(row_stats, col_stats)``: tuples of fp32 arrays, in spec order.
    """
    row_specs, col_specs = _validate_specs(row_specs), _validate_specs(col_specs)
    acc = acc_dtype(q, k)
    scale = jnp.asarray(scale, acc)
    bias = jnp.asarray(bias, acc)
    if block_size is None:
        return _dense(q, k, scale, bias, meta, row_specs, col_specs)
    return _streamed(row_specs, col_specs, int(block_size), q, k, scale, bias, meta)


def _dense(q, k, scale, bias, meta, row_specs, col_specs):
    x = scale * _dot(q, k) + bias
    mask, same = _masks(*meta)
    rows = tuple(_stat(s, x, mask(s.include), same, 1) for s in row_specs)
    cols = tuple(_stat(s, x, mask(s.include), same, 0) for s in col_specs)
    return rows, cols


# ----------------------------------------------------------------------------- streaming


def _blocks(k, col_pos, col_label, block_size):
    """Pad the key side to a multiple of ``block_size`` and split it into blocks."""
    m, d = k.shape
    nb = -(-m // block_size)
    pad = nb * block_size - m
    if pad:
        k = jnp.pad(k, ((0, pad), (0, 0)))
        col_pos = jnp.pad(col_pos, (0, pad), constant_values=PAD)
        col_label = jnp.pad(col_label, (0, pad), constant_values=PAD)
    return (
        k.reshape(nb, block_size, d),
        col_pos.reshape(nb, block_size),
        col_label.reshape(nb, block_size),
    )


def _unblock(x, m):
    return x.reshape(-1)[:m]


def _forward(row_specs, col_specs, block_size, q, k, scale, bias, meta):
    b = q.shape[0]
    m = k.shape[0]
    acc = acc_dtype(q, k)
    kb, cpos, clab = _blocks(k, meta.col_pos, meta.col_label, block_size)

    def init(spec):
        if isinstance(spec, Lse):  # running (max, sum of exp(x - max))
            return (jnp.full((b,), -jnp.inf, acc), jnp.zeros((b,), acc))
        return jnp.zeros((b,), acc)

    def body(carry, blk):
        kj, pj, lj = blk
        x = scale * _dot(q, kj) + bias
        mask, same = _masks(meta.row_pos, meta.row_label, pj, lj)
        new = []
        for spec, c in zip(row_specs, carry):
            mk = mask(spec.include)
            if isinstance(spec, Lse):
                run_max, run_sum = c
                xm = jnp.where(mk, spec.coef * x, -jnp.inf)
                new_max = jnp.maximum(run_max, jnp.max(xm, axis=1))
                shift = _safe(new_max)
                run_sum = run_sum * jnp.exp(run_max - shift) + jnp.sum(
                    jnp.exp(xm - shift[:, None]), axis=1
                )
                new.append((new_max, run_sum))
            else:
                new.append(c + jnp.sum(jnp.where(mk, spec.fn(x, same), 0.0), axis=1))
        cols = tuple(_stat(s, x, mask(s.include), same, 0) for s in col_specs)
        return tuple(new), cols

    carry, cols = lax.scan(body, tuple(init(s) for s in row_specs), (kb, cpos, clab))
    rows = []
    for spec, c in zip(row_specs, carry):
        if isinstance(spec, Lse):
            run_max, run_sum = c
            ok = run_sum > 0
            rows.append(
                jnp.where(ok, jnp.log(jnp.where(ok, run_sum, 1.0)) + _safe(run_max), -jnp.inf)
            )
        else:
            rows.append(c)
    return tuple(rows), tuple(_unblock(c, m) for c in cols)


def _dstat(spec: Spec, x, mask, same, stat, ct):
    """Contribution of one statistic to ``dL/dX`` (``stat``/``ct`` broadcast already)."""
    if isinstance(spec, Lse):
        p = jnp.where(mask, jnp.exp(spec.coef * x - _safe(stat)), 0.0)
        return (ct * spec.coef) * p
    deriv = jax.jvp(lambda y: spec.fn(y, same), (x,), (jnp.ones_like(x),))[1]
    return ct * jnp.where(mask, deriv, 0.0)


def _backward(row_specs, col_specs, block_size, res, cts):
    q, k, scale, bias, meta, rows, cols = res
    ct_rows, ct_cols = cts
    m = k.shape[0]
    acc = acc_dtype(q, k)
    kb, cpos, clab = _blocks(k, meta.col_pos, meta.col_label, block_size)
    # Column statistics and their cotangents travel with their key block: [nb, bs, 2].
    col_blocks = tuple(
        _blocks(jnp.stack([c, t], 1), meta.col_pos, meta.col_label, block_size)[0]
        for c, t in zip(cols, ct_cols)
    )

    def body(carry, blk):
        dq, dscale, dbias = carry
        kj, pj, lj, colj = blk
        d = _dot(q, kj)
        x = scale * d + bias
        mask, same = _masks(meta.row_pos, meta.row_label, pj, lj)
        g = jnp.zeros_like(x)
        for spec, stat, ct in zip(row_specs, rows, ct_rows):
            g = g + _dstat(spec, x, mask(spec.include), same, stat[:, None], ct[:, None])
        for spec, st in zip(col_specs, colj):
            g = g + _dstat(spec, x, mask(spec.include), same, st[None, :, 0], st[None, :, 1])
        gq = g.astype(q.dtype)
        dq = dq + lax.dot_general(gq, kj, (((1,), (0,)), ((), ())), preferred_element_type=acc)
        dk = lax.dot_general(gq, q, (((0,), (0,)), ((), ())), preferred_element_type=acc)
        return (dq, dscale + jnp.sum(g * d), dbias + jnp.sum(g)), dk

    zero = jnp.zeros((), acc)
    (dq, dscale, dbias), dk = lax.scan(
        body, (jnp.zeros(q.shape, acc), zero, zero), (kb, cpos, clab, col_blocks)
    )
    dk = dk.reshape(-1, k.shape[1])[:m]
    return (
        (scale * dq).astype(q.dtype),
        (scale * dk).astype(k.dtype),
        dscale,
        dbias,
        None,
    )


# The specs and block size are static (hashable) arguments of the custom VJP.
_streamed = jax.custom_vjp(_forward, nondiff_argnums=(0, 1, 2))


def _streamed_fwd(row_specs, col_specs, block_size, q, k, scale, bias, meta):
    out = _forward(row_specs, col_specs, block_size, q, k, scale, bias, meta)
    return out, (q, k, scale, bias, meta, out[0], out[1])


_streamed.defvjp(_streamed_fwd, _backward)
