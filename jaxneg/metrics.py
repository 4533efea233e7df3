"""Representation metrics: alignment, uniformity (Wang & Isola 2020), tolerance (Wang & Liu 2021)
and RankMe (Garrido et al. 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import logsumexp

from jaxneg import _checks as C
from jaxneg.losses._pairwise import Lse, Meta, acc_dtype, pair_stats
from jaxneg._array import l2_normalize


def alignment(x, y, *, alpha=2.0, normalize: bool = True):
    r"""``E_i ||x_i - y_i||_2^alpha`` over positive pairs (lower is better).

    Args:
      x, y: ``[N, D]`` positive pairs; alpha: ``> 0``.

    References:
      Wang & Isola, *Understanding Contrastive Representation Learning through Alignment
      and Uniformity on the Hypersphere*, ICML 2020.
    """
    fn = "alignment"
    x = C.as_float_array(fn, "x", x, 2, "[N, D]")
    y = C.as_float_array(fn, "y", y, 2, "[N, D]")
    C.same_shape(fn, "y", y, "x", x)
    C.scalar(fn, "alpha", alpha, low=0.0)
    if normalize:
        x, y = l2_normalize(x), l2_normalize(y)
    acc = acc_dtype(x, y)
    d2 = jnp.sum(jnp.square(x.astype(acc) - y.astype(acc)), axis=1)
    # ||.||^alpha = (d2)^(alpha/2), with a finite gradient at 0 for alpha >= 2.
    return jnp.mean(jnp.power(jnp.maximum(d2, 0.0), alpha / 2.0))


def uniformity(x, *, t=2.0, normalize: bool = True, block_size: int | None = None):
    r"""``log E_{i != j} exp(-t ||x_i - x_j||^2)`` (lower is more uniform).

    On the unit sphere ``||x_i - x_j||^2 = 2 - 2 <x_i, x_j>``, so this is a log-sum-exp of
    the logits ``2t <x_i, x_j> - 2t`` over ``i != j`` minus ``log N(N-1)``; it streams over
    blocks with ``block_size`` (memory ``O(N * block_size)``). Requires ``normalize=True``
    semantics (unit vectors); with ``normalize=False`` the inputs must already be unit norm.

    Args:
      x: ``[N, D]``, ``N >= 2``; t: ``> 0``.
    """
    fn = "uniformity"
    x = C.as_float_array(fn, "x", x, 2, "[N, D]")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"{fn}: x needs at least 2 rows, got shape {list(x.shape)}")
    C.scalar(fn, "t", t, low=0.0)
    block_size = C.block_size(fn, block_size)
    if normalize:
        x = l2_normalize(x)
    ids = jnp.arange(n, dtype=jnp.int32)
    (row,), _ = pair_stats(x, x, 2.0 * t, -2.0 * t, Meta(ids, ids, ids, ids), (Lse("not_self"),), (), block_size)
    return logsumexp(row) - jnp.log(jnp.asarray(n * (n - 1), row.dtype))


def tolerance(x, labels, *, normalize: bool = True):
    r"""Mean cosine similarity of same-class pairs: ``E_{i != j, y_i = y_j} <x_i, x_j>`` (higher is more tolerant).

    Computed from per-class sums, ``sum_c (||S_c||^2 - sum_{i in c} ||x_i||^2) / sum_c n_c (n_c - 1)``
    with ``S_c = sum_{i in c} x_i``: ``O(N D)`` memory, no ``N x N`` matrix.

    Args:
      x: ``[N, D]``; labels: ``[N]`` integer classes (at least one class with two members).

    References:
      Wang & Liu, *Understanding the Behaviour of Contrastive Loss*, CVPR 2021 (Eq. 9).
    """
    fn = "tolerance"
    x = C.as_float_array(fn, "x", x, 2, "[N, D]")
    labels = jnp.asarray(labels)
    if labels.shape != (x.shape[0],) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{fn}: labels must be integer [N] = [{x.shape[0]}], got {labels.dtype} {list(labels.shape)}")
    if normalize:
        x = l2_normalize(x)
    acc = acc_dtype(x)
    x = x.astype(acc)
    _, inv = jnp.unique(labels, return_inverse=True, size=x.shape[0])
    inv = inv.reshape(-1)
    sums = jax.ops.segment_sum(x, inv, num_segments=x.shape[0])
    counts = jax.ops.segment_sum(jnp.ones_like(inv, acc), inv, num_segments=x.shape[0])
    pairs = jnp.sum(counts * (counts - 1))
    total = jnp.sum(jnp.square(sums)) - jnp.sum(jnp.square(x))
    return jnp.where(pairs > 0, total / jnp.maximum(pairs, 1), jnp.nan)


def rankme(z, *, eps=1e-7):
    r"""RankMe effective rank: ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / ||sigma||_1 + eps``.

    ``sigma`` are the singular values of the ``[N, D]`` embedding matrix (not centred, as
    in the paper). Ranges from 1 to ``min(N, D)``.

    References:
      Garrido et al., *RankMe: Assessing the Downstream Performance of Pretrained
      Self-Supervised Representations by Their Rank*, ICML 2023.
    """
    fn = "rankme"
    z = C.as_float_array(fn, "z", z, 2, "[N, D]")
    s = jnp.linalg.svd(z.astype(acc_dtype(z)), compute_uv=False)
    p = s / jnp.maximum(jnp.sum(s), jnp.finfo(s.dtype).tiny) + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


__all__ = ["alignment", "uniformity", "tolerance", "rankme"]
