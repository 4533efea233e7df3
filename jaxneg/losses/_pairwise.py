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
in a ``lax.scan`` (and each block's rows in tiles): row statistics are carried as a running
log-sum-exp (or running sum), column statistics are complete inside each block. The backward pass is a custom VJP that
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

from jaxneg._array import vma as _vma
from jaxneg._array import vary_like

EXTRA = -1  # column ``pos`` of an extra negative (never label-masked)
PAD = -2  # column ``pos`` of padding (always excluded)
INCLUDES = ("all", "neg", "not_self", "pos")
GATHERS = ("all_gather", "ring")


class Lse(NamedTuple):
    """``log sum_{j in S_i} exp(coef * X_ij)``.

    ``shift`` (set by :func:`pair_stats`, not by callers): a fixed ``c >= coef * X_ij`` for
    every pair, so the streamed path sums ``exp(coef * X - c)`` with no running maximum (and
    a row and a column statistic of the same ``coef`` share one exponential per tile).
    """

    include: str
    coef: float = 1.0
    shift: float | None = None


class Sum(NamedTuple):
    """``sum_{j in S_i} fn(X_ij, same_ij)``; ``fn`` must be elementwise and hashable."""

    include: str
    fn: Callable


Spec = Lse | Sum


class Meta(NamedTuple):
    """Integer metadata: row/column position ids and labels (int32).

    ``drop`` (optional bool ``[B, M]``) removes individual pairs from every set, e.g. a
    guide model's false-negative mask (:func:`jaxneg.samplers.guided_mask`).
    """

    row_pos: jax.Array
    row_label: jax.Array
    col_pos: jax.Array
    col_label: jax.Array
    drop: jax.Array | None = None


def _masks(row_pos, row_label, col_pos, col_label, drop=None):
    """Return ``mask(include)`` and ``same`` for one block (rows x columns)."""
    col_real = (col_pos >= 0)[None, :]
    is_self = row_pos[:, None] == col_pos[None, :]
    same = (row_label[:, None] == col_label[None, :]) & col_real
    valid = (col_pos != PAD)[None, :]
    if drop is not None:
        valid = valid & ~drop
        same = same & ~drop

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


def _lse_parts(x, mask, axis):
    """Partial (max, sum of exp(x - max)) of a masked log-sum-exp along ``axis``.

    The shift is gradient-free (it cancels); ``_safe`` keeps an all-masked slice finite.
    """
    xm = jnp.where(mask, x, -jnp.inf)
    mx = lax.stop_gradient(jnp.max(xm, axis=axis))
    return mx, jnp.sum(jnp.exp(xm - jnp.expand_dims(_safe(mx), axis)), axis=axis)


#: the largest ``coef * (max X - min X)`` a fixed shift may span: every ``exp(coef * X - shift)``
#: then stays >= e^-80, a normal fp32 number, so the sums keep fp32's relative precision
SHIFT_SPAN = 80.0


def _with_shifts(specs, scale, bias, bound):
    """``specs`` with a fixed shift on each ``Lse`` where ``|<q, k>| <= bound`` makes it exact.

    ``X = scale <q, k> + bias`` then lies in ``bias ± |scale| bound``; the shift is the top
    of that range. Needs concrete ``scale``/``bias`` (a traced temperature keeps the running
    maximum) and a span of at most :data:`SHIFT_SPAN` (else, e.g. ``t = 0.01``, the maximum).
    """
    if bound is None or not all(map(_is_concrete, (scale, bias))):
        return specs
    scale, bias = float(scale), float(bias)
    out = []
    for spec in specs:
        if (isinstance(spec, Lse) and isinstance(spec.coef, (int, float)) and spec.coef >= 0
                and 2 * spec.coef * abs(scale) * bound <= SHIFT_SPAN):
            spec = spec._replace(shift=spec.coef * (abs(scale) * bound + bias))
        out.append(spec)
    return tuple(out)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer) and jnp.ndim(x) == 0


def _finish_lse(m, s):
    """``log s + m`` from a (max, sum) pair; ``-inf`` where nothing was summed."""
    ok = s > 0
    return jnp.where(ok, jnp.log(jnp.where(ok, s, 1.0)) + _safe(m), -jnp.inf)


def masked_lse(x, mask, axis):
    """Masked log-sum-exp along ``axis``; ``-inf`` (with zero gradient) where all masked."""
    return _finish_lse(*_lse_parts(x, mask, axis))


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
    row_block_size: int | None = None,
    axis_name=None,
    gather: str = "all_gather",
    bound: float | None = None,
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
      row_block_size: rows per tile inside a key block (default ``min(B, block_size)``);
        only the speed depends on it (smaller tiles stay in cache).
      axis_name: inside ``jax.shard_map``, the mesh axis over which rows and columns are
        sharded. ``q``, ``k`` and ``meta`` are then this device's shard (ids global); row
        statistics cover every device's columns, and column statistics every device's rows
        (returned for this device's columns).
      gather: ``"all_gather"`` (gather the columns; memory ``O(W m D)``) or ``"ring"``
        (pass column shards around with ``ppermute``; memory ``O(m D)``, streamed inside
        each shard with ``block_size``, default the shard). ``meta.drop`` is then
        ``[B, W * m]``: the devices' column shards in device order.
      bound: a bound on ``|<q_i, k_j>|`` (``1`` for unit-norm rows; a slight excess is
        harmless). With concrete ``scale`` and ``bias`` the streamed path then subtracts the
        fixed ``scale * bound + bias`` instead of a running maximum where that cannot
        underflow (:func:`_with_shifts`): one exponential per tile serves a row and a column
        statistic, and no maxima are taken. The values are the same to fp32 rounding.

    Returns:
      ``(row_stats, col_stats)``: tuples of fp32 arrays, in spec order.
    """
    row_specs, col_specs = _validate_specs(row_specs), _validate_specs(col_specs)
    if block_size is not None:
        row_specs, col_specs = (_with_shifts(sp, scale, bias, bound) for sp in (row_specs, col_specs))
    acc = acc_dtype(q, k)
    scale = jnp.asarray(scale, acc)
    bias = jnp.asarray(bias, acc)
    if axis_name is not None:
        if gather not in GATHERS:
            raise ValueError(f"pair_stats: gather must be one of {GATHERS}, got {gather!r}")
        scale, bias = _varying(scale, axis_name), _varying(bias, axis_name)
        if gather == "all_gather":
            return _gathered(q, k, scale, bias, meta, row_specs, col_specs, block_size, row_block_size, axis_name)
        bs = int(block_size or k.shape[0])
        return _ring(row_specs, col_specs, bs, _row_block(q, row_block_size, bs), axis_name, q, k, scale, bias, meta)
    return _local(q, k, scale, bias, meta, row_specs, col_specs, block_size, row_block_size)


def _row_block(q, row_block_size, block_size):
    """Rows per tile: ``row_block_size``, default ``block_size``, at most ``B``."""
    return min(q.shape[0], int(row_block_size or block_size))


def _local(q, k, scale, bias, meta, row_specs, col_specs, block_size, row_block_size):
    """All columns on this device: the dense path, or the streamed one with its custom VJP."""
    if block_size is None:
        return _dense(q, k, scale, bias, meta, row_specs, col_specs)
    rb = _row_block(q, row_block_size, block_size)
    return _streamed(row_specs, col_specs, int(block_size), rb, q, k, scale, bias, meta)


def _dense(q, k, scale, bias, meta, row_specs, col_specs):
    x = scale * _dot(q, k) + bias
    mask, same = _masks(*meta)
    rows = tuple(_stat(s, x, mask(s.include), same, 1) for s in row_specs)
    cols = tuple(_stat(s, x, mask(s.include), same, 0) for s in col_specs)
    return rows, cols


# ----------------------------------------------------------------------------- streaming
#
# The key side is cut into blocks of ``block_size`` columns (the outer ``lax.scan``) and,
# inside each block, the query side into tiles of ``row_block`` rows (an inner
# ``lax.map``), so every elementwise pass works on a cache-sized ``row_block x block_size``
# tile. Row statistics are carried across key blocks as running (max, sum) pairs; column
# statistics are combined across the row tiles of their block.


def _pad_rows(x, n, value=0):
    pad = n - x.shape[0]
    if pad == 0:
        return x
    widths = ((0, pad),) + ((0, 0),) * (x.ndim - 1)
    return jnp.pad(x, widths, constant_values=value)


def _split(x, size, value=0):
    """Pad the leading axis to a multiple of ``size`` and reshape to ``[n, size, ...]``."""
    n = -(-x.shape[0] // size)
    return _pad_rows(x, n * size, value).reshape((n, size) + x.shape[1:])


def _tile_masks(rpos, rlab, cpos, clab, drop=None):
    """Masks for one tile; padded rows (``rpos == PAD``) are excluded from every set."""
    mask, same = _masks(rpos, rlab, cpos, clab, drop)
    row_ok = (rpos != PAD)[:, None]
    return (lambda include: mask(include) & row_ok), same


def _drop_tiles(drop, row_block, block_size):
    """``drop [B, M]`` -> ``[n_blocks, n_tiles, row_block, block_size]`` (padding dropped), or ``None``."""
    if drop is None:
        return None
    b, m = drop.shape
    nt, nb = -(-b // row_block), -(-m // block_size)
    d = jnp.pad(drop, ((0, nt * row_block - b), (0, nb * block_size - m)), constant_values=True)
    return d.reshape(nt, row_block, nb, block_size).transpose(2, 0, 1, 3)


def _merge_lse(m1, s1, m2, s2):
    """Combine two partial log-sum-exps (max, sum) -> (max, sum)."""
    m = jnp.maximum(m1, m2)
    shift = _safe(m)
    return m, s1 * jnp.exp(m1 - shift) + s2 * jnp.exp(m2 - shift)


def _forward(row_specs, col_specs, block_size, row_block, q, k, scale, bias, meta):
    b, m = q.shape[0], k.shape[0]
    acc = acc_dtype(q, k)
    kb, cpos, clab = _split(k, block_size), _split(meta.col_pos, block_size, PAD), _split(meta.col_label, block_size, PAD)
    qt = _split(q, row_block)
    rpos, rlab = _split(meta.row_pos, row_block, PAD), _split(meta.row_label, row_block, PAD)
    nt = qt.shape[0]

    def init(spec):
        if isinstance(spec, Lse):
            return (jnp.full((nt, row_block), -jnp.inf, acc), jnp.zeros((nt, row_block), acc))
        return jnp.zeros((nt, row_block), acc)

    def block(carry, blk):
        kj, pj, lj, dj = blk

        def tile(args):
            qi, rp, rl, di, rows_in = args
            x = scale * _dot(qi, kj) + bias
            mask, same = _tile_masks(rp, rl, pj, lj, di)
            shifted = _shifted_exp(x)

            def lse_parts(spec, mk, axis):
                if spec.shift is None:
                    return _lse_parts(spec.coef * x, mk, axis)
                top = jnp.full(x.shape[1 - axis], spec.shift, x.dtype)
                return top, jnp.sum(jnp.where(mk, shifted(spec), 0.0), axis=axis)

            rows_out = []
            for spec, c in zip(row_specs, rows_in):
                mk = mask(spec.include)
                if isinstance(spec, Lse):
                    rows_out.append(_merge_lse(*c, *lse_parts(spec, mk, 1)))
                else:
                    rows_out.append(c + jnp.sum(jnp.where(mk, spec.fn(x, same), 0.0), axis=1))
            cols = []
            for spec in col_specs:
                mk = mask(spec.include)
                if isinstance(spec, Lse):
                    cols.append(lse_parts(spec, mk, 0))
                else:
                    cols.append(jnp.sum(jnp.where(mk, spec.fn(x, same), 0.0), axis=0))
            return tuple(rows_out), tuple(cols)

        rows, cols = lax.map(tile, (qt, rpos, rlab, dj, carry))
        done = []
        for spec, c in zip(col_specs, cols):  # combine the row tiles' partials: [nt, bs] -> [bs]
            if isinstance(spec, Lse):
                mx, sm = c
                top = jnp.max(mx, axis=0)
                done.append(_finish_lse(top, jnp.sum(sm * jnp.exp(mx - _safe(top)), axis=0)))
            else:
                done.append(jnp.sum(c, axis=0))
        return rows, tuple(done)

    drop = _drop_tiles(meta.drop, row_block, block_size)
    init0 = vary_like(tuple(init(s) for s in row_specs), q, k, scale, bias, meta)
    carry, cols = lax.scan(block, init0, (kb, cpos, clab, drop))
    rows = tuple(
        (_finish_lse(*c) if isinstance(spec, Lse) else c).reshape(-1)[:b] for spec, c in zip(row_specs, carry)
    )
    return rows, tuple(c.reshape(-1)[:m] for c in cols)


def _shifted_exp(x):
    """``exp(coef * x - shift)`` of a tile, computed once per ``(coef, shift)`` however many specs use it."""
    cache = {}

    def get(spec):
        key = (spec.coef, spec.shift)
        if key not in cache:
            cache[key] = jnp.exp(spec.coef * x - spec.shift)
        return cache[key]

    return get


def _dstat(spec: Spec, x, mask, same, stat, ct, shifted=None):
    """Contribution of one statistic to ``dL/dX`` (``stat``/``ct`` broadcast already).

    With a fixed shift, ``exp(coef X - stat) = exp(coef X - shift) · exp(shift - stat)``: the
    tile's one shifted exponential (``shifted``) times a per-row (or per-column) factor.
    """
    if isinstance(spec, Lse):
        if spec.shift is not None and shifted is not None:
            p = jnp.where(mask, shifted(spec) * jnp.exp(spec.shift - _safe(stat)), 0.0)
        else:
            p = jnp.where(mask, jnp.exp(spec.coef * x - _safe(stat)), 0.0)
        return (ct * spec.coef) * p
    deriv = jax.jvp(lambda y: spec.fn(y, same), (x,), (jnp.ones_like(x),))[1]
    return ct * jnp.where(mask, deriv, 0.0)


def _backward_parts(row_specs, col_specs, block_size, row_block, res, cts):
    """Unscaled ``(dq, dk)`` in the accumulation dtype, and ``d scale``, ``d bias``."""
    q, k, scale, bias, meta, rows, cols = res
    ct_rows, ct_cols = cts
    b, m, d = q.shape[0], k.shape[0], k.shape[1]
    acc = acc_dtype(q, k)
    kb, cpos, clab = _split(k, block_size), _split(meta.col_pos, block_size, PAD), _split(meta.col_label, block_size, PAD)
    # Column statistics and their cotangents travel with their key block.
    col_st = tuple(_split(jnp.stack([c, t], 1), block_size) for c, t in zip(cols, ct_cols))
    qt = _split(q, row_block)
    rpos, rlab = _split(meta.row_pos, row_block, PAD), _split(meta.row_label, row_block, PAD)
    row_st = tuple(_split(jnp.stack([r, t], 1), row_block) for r, t in zip(rows, ct_rows))

    def block(carry, blk):
        dq, dscale, dbias = carry
        kj, pj, lj, dj, colj = blk

        def tile(args):
            qi, rp, rl, di, rst, dqi = args
            dot = _dot(qi, kj)
            x = scale * dot + bias
            mask, same = _tile_masks(rp, rl, pj, lj, di)
            shifted = _shifted_exp(x)
            g = jnp.zeros_like(x)
            for spec, st in zip(row_specs, rst):
                g = g + _dstat(spec, x, mask(spec.include), same, st[:, None, 0], st[:, None, 1], shifted)
            for spec, st in zip(col_specs, colj):
                g = g + _dstat(spec, x, mask(spec.include), same, st[None, :, 0], st[None, :, 1], shifted)
            gq = g.astype(q.dtype)
            dqi = dqi + lax.dot_general(gq, kj, (((1,), (0,)), ((), ())), preferred_element_type=acc)
            dki = lax.dot_general(gq, qi, (((0,), (0,)), ((), ())), preferred_element_type=acc)
            return dqi, dki, jnp.sum(g * dot), jnp.sum(g)

        dq, dk, ds, db = lax.map(tile, (qt, rpos, rlab, dj, row_st, dq))
        return (dq, dscale + jnp.sum(ds), dbias + jnp.sum(db)), jnp.sum(dk, axis=0)

    zero = jnp.zeros((), acc)
    (dq, dscale, dbias), dk = lax.scan(
        block, vary_like((jnp.zeros(qt.shape, acc), zero, zero), res, cts), (kb, cpos, clab, _drop_tiles(meta.drop, row_block, block_size), col_st)
    )
    return dq.reshape(-1, d)[:b], dk.reshape(-1, d)[:m], dscale, dbias


def _backward(row_specs, col_specs, block_size, row_block, res, cts):
    q, k, scale = res[0], res[1], res[2]
    dq, dk, dscale, dbias = _backward_parts(row_specs, col_specs, block_size, row_block, res, cts)
    return (scale * dq).astype(q.dtype), (scale * dk).astype(k.dtype), dscale, dbias, None


# The specs, block size and row tile are static (hashable) arguments of the custom VJP.
_streamed = jax.custom_vjp(_forward, nondiff_argnums=(0, 1, 2, 3))


def _streamed_fwd(row_specs, col_specs, block_size, row_block, q, k, scale, bias, meta):
    out = _forward(row_specs, col_specs, block_size, row_block, q, k, scale, bias, meta)
    return out, (q, k, scale, bias, meta, out[0], out[1])


_streamed.defvjp(_streamed_fwd, _backward)


# ----------------------------------------------------------------------------- across devices
#
# Inside ``jax.shard_map`` every device holds its own rows ``q`` and columns ``k`` (with
# global position ids and labels in ``meta``). Row statistics must cover the columns of
# every device; column statistics the rows of every device, delivered to the column's owner.
#
# * ``all_gather``: gather all columns (``lax.all_gather``, whose transpose
#   ``psum_scatter`` returns each key's gradient to its owner), compute against the local
#   rows, then combine the column statistics across devices (``pmax``/``psum_scatter``).
# * ``ring``: the column shards travel around the ring (``lax.ppermute``), with their
#   partial column statistics riding along; each device folds every visiting shard into
#   its running row statistics. After one lap each shard is home with complete column
#   statistics. The backward pass is the same lap: each visiting shard picks up its
#   gradient contribution from every device and brings it home. No device ever holds
#   more than its own and one visiting shard.


def _varying(x, axis_name):
    """Mark a replicated scalar as device-varying, so its gradient is summed over devices."""
    if axis_name in _vma(x):
        return x
    return lax.pcast(x, axis_name, to="varying")


def _gathered(q, k, scale, bias, meta, row_specs, col_specs, block_size, row_block_size, axis_name):
    m = k.shape[0]
    k_all = lax.all_gather(k, axis_name, tiled=True)
    cpos = lax.all_gather(meta.col_pos, axis_name, tiled=True)
    clab = lax.all_gather(meta.col_label, axis_name, tiled=True)
    meta_all = Meta(meta.row_pos, meta.row_label, cpos, clab, meta.drop)
    rows, cols = _local(q, k_all, scale, bias, meta_all, row_specs, col_specs, block_size, row_block_size)
    me = lax.axis_index(axis_name)
    own = []
    for spec, c in zip(col_specs, cols):  # c [W * m]: this device's rows only -> all rows, own columns
        if isinstance(spec, Sum):
            own.append(lax.psum_scatter(c, axis_name, scatter_dimension=0, tiled=True))
        else:
            top = lax.pmax(lax.stop_gradient(c), axis_name)
            part = lax.psum_scatter(jnp.exp(c - _safe(top)), axis_name, scatter_dimension=0, tiled=True)
            own.append(_finish_lse(lax.dynamic_slice_in_dim(top, me * m, m), part))
    return rows, tuple(own)


def _merge_finished(spec, a, b):
    """Combine two finished statistics of disjoint sets."""
    return jnp.logaddexp(a, b) if isinstance(spec, Lse) else a + b


def _ring_lap(axis_name, q, k, meta, travellers, local, visit):
    """One lap of the ring: ``visit(shard_meta, k_shard, travellers)`` at every stop.

    ``visit`` returns the updated travellers (which move on with the shard) and whatever
    accumulates locally. The shard is ``(k, col_pos, col_label)``; ``meta.drop`` columns
    are sliced to the visiting shard's owner. After the last stop, the travellers take one
    more hop so that each shard's arrive home.
    """
    n, me, m = lax.axis_size(axis_name), lax.axis_index(axis_name), k.shape[0]
    perm = [(i, (i + 1) % n) for i in range(n)]

    def stop(s, shard, trav, local):
        kc, cpos, clab = shard
        drop = None if meta.drop is None else lax.dynamic_slice_in_dim(meta.drop, ((me - s) % n) * m, m, axis=1)
        return visit(Meta(meta.row_pos, meta.row_label, cpos, clab, drop), kc, trav, local)

    def step(carry, s):
        shard, trav, local = carry
        trav, local = stop(s, shard, trav, local)
        return lax.ppermute((shard, trav), axis_name, perm) + (local,), None

    shard = (k, meta.col_pos, meta.col_label)
    (shard, trav, local), _ = lax.scan(step, (shard, travellers, local), jnp.arange(n - 1))
    trav, local = stop(n - 1, shard, trav, local)
    return lax.ppermute(trav, axis_name, perm), local


def _ring_forward(row_specs, col_specs, block_size, row_block, axis_name, q, k, scale, bias, meta):
    acc = acc_dtype(q, k)
    empty = lambda spec, n: jnp.full((n,), -jnp.inf if isinstance(spec, Lse) else 0.0, acc)
    rows0 = tuple(empty(spec, q.shape[0]) for spec in row_specs)
    cols0 = tuple(empty(spec, k.shape[0]) for spec in col_specs)

    def visit(mt, kc, cols, rows):
        r, c = _forward(row_specs, col_specs, block_size, row_block, q, kc, scale, bias, mt)
        rows = tuple(_merge_finished(sp, a, b) for sp, a, b in zip(row_specs, rows, r))
        return tuple(_merge_finished(sp, a, b) for sp, a, b in zip(col_specs, cols, c)), rows

    cols0, rows0 = vary_like((cols0, rows0), q, k, scale, bias, meta)
    cols, rows = _ring_lap(axis_name, q, k, meta, cols0, rows0, visit)
    return rows, cols


def _ring_fwd(row_specs, col_specs, block_size, row_block, axis_name, q, k, scale, bias, meta):
    out = _ring_forward(row_specs, col_specs, block_size, row_block, axis_name, q, k, scale, bias, meta)
    return out, (q, k, scale, bias, meta, out[0], out[1])


def _ring_bwd(row_specs, col_specs, block_size, row_block, axis_name, res, cts):
    q, k, scale, bias, meta, rows, cols = res
    ct_rows, ct_cols = cts
    acc = acc_dtype(q, k)

    def visit(mt, kc, trav, local):
        cols_c, ct_c, dk = trav
        parts = _backward_parts(row_specs, col_specs, block_size, row_block,
                                (q, kc, scale, bias, mt, rows, cols_c), (ct_rows, ct_c))
        dq, dk_s, ds, db = parts
        return (cols_c, ct_c, dk + dk_s), (local[0] + dq, local[1] + ds, local[2] + db)

    zero = jnp.zeros((), acc)
    trav0 = (tuple(cols), tuple(ct_cols), jnp.zeros(k.shape, acc))
    local0 = (jnp.zeros(q.shape, acc), zero, zero)
    trav0, local0 = vary_like((trav0, local0), res, cts)
    (_, _, dk), (dq, dscale, dbias) = _ring_lap(axis_name, q, k, meta, trav0, local0, visit)
    return (scale * dq).astype(q.dtype), (scale * dk).astype(k.dtype), dscale, dbias, None


_ring = jax.custom_vjp(_ring_forward, nondiff_argnums=(0, 1, 2, 3, 4))
_ring.defvjp(_ring_fwd, _ring_bwd)
