"""Batch composition: k-means topics, single-cluster batches (NGAME), TAS-Balanced."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxneg import _checks as C
from jaxneg.registry import SAMPLERS


class KMeans(NamedTuple):
    """``centroids [k, D]``, ``assignments [N]`` (int32) and ``inertia`` (sum of squared distances)."""

    centroids: jax.Array
    assignments: jax.Array
    inertia: jax.Array


def _sqdist(x, c):
    """``||x_i - c_j||^2`` (clipped at 0), fp32."""
    xc = lax.dot_general(x, c, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    return jnp.maximum(jnp.sum(x * x, 1)[:, None] - 2 * xc + jnp.sum(c * c, 1)[None, :], 0.0)


def _assign(x, c, chunk):
    """Nearest centroid of every row, ``chunk`` rows at a time: ``([N] int32, [N] sq. distance)``."""
    n = x.shape[0]
    nc = -(-n // chunk)
    xs = jnp.pad(x, ((0, nc * chunk - n), (0, 0))).reshape(nc, chunk, -1)

    def one(xi):
        d = _sqdist(xi, c)
        a = jnp.argmin(d, axis=1).astype(jnp.int32)
        return a, jnp.take_along_axis(d, a[:, None], 1)[:, 0]

    a, d = lax.map(one, xs)
    return a.reshape(-1)[:n], d.reshape(-1)[:n]


@SAMPLERS.register("kmeans")
def kmeans(key, x, k: int, *, iters: int = 20, chunk_size: int = 4096) -> KMeans:
    r"""Lloyd's k-means in JAX with k-means++ seeding.

    Seeding: the first centroid is a uniform row, each next one a row drawn with probability
    ``∝ min_j ||x_i - c_j||^2`` (Arthur & Vassilvitskii). Then ``iters`` Lloyd steps:
    ``a_i = argmin_j ||x_i - c_j||^2``, ``c_j = mean{x_i : a_i = j}`` (an empty cluster keeps
    its centroid). Distances are computed ``chunk_size`` rows at a time, so memory is
    ``O(N D + chunk_size k)``. The inertia never increases from one step to the next.

    Args:
      key: a ``jax.random`` key (seeding).
      x: ``[N, D]`` points (e.g. query embeddings for topic-aware batches); ``N >= k``.
      k: clusters (``>= 1``).
      iters: Lloyd steps (``>= 0``).

    Returns:
      :class:`KMeans` ``(centroids [k, D] fp32, assignments [N], inertia)``.

    References:
      Lloyd, *Least squares quantization in PCM*, 1982. Arthur & Vassilvitskii,
      *k-means++: The Advantages of Careful Seeding*, 2007.
    """
    fn = "kmeans"
    x = C.as_float_array(fn, "x", x, 2, "[N, D]").astype(jnp.float32)
    n = x.shape[0]
    k = C.integer(fn, "k", k, 1)
    iters = C.integer(fn, "iters", iters, 0)
    chunk = min(n, C.integer(fn, "chunk_size", chunk_size, 1))
    if k > n:
        raise ValueError(f"{fn}: k must be <= N = {n} (rows of x), got {k}")
    k0, kseed = jax.random.split(key)
    first = x[jax.random.randint(k0, (), 0, n)]
    cent = jnp.zeros((k, x.shape[1]), jnp.float32).at[0].set(first)
    d2 = jnp.sum(jnp.square(x - first), axis=1)

    def seed(j, carry):
        cent, d2 = carry
        w = jnp.where(jnp.sum(d2) > 0, d2, 1.0)  # all points on a centroid: pick uniformly
        i = jax.random.categorical(jax.random.fold_in(kseed, j), jnp.log(w))
        cent = cent.at[j].set(x[i])
        return cent, jnp.minimum(d2, jnp.sum(jnp.square(x - x[i]), axis=1))

    cent, _ = lax.fori_loop(1, k, seed, (cent, d2))

    def lloyd(_, cent):
        a, _ = _assign(x, cent, chunk)
        sums = jax.ops.segment_sum(x, a, num_segments=k)
        cnt = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), a, num_segments=k)
        return jnp.where(cnt[:, None] > 0, sums / jnp.maximum(cnt, 1.0)[:, None], cent)

    cent = lax.fori_loop(0, iters, lloyd, cent)
    a, d = _assign(x, cent, chunk)
    return KMeans(cent, a, jnp.sum(d))


def _cluster_ids(fn, cluster_ids):
    ids = jnp.asarray(cluster_ids)
    if ids.ndim != 1 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{fn}: cluster_ids must be an int array of shape [N], got {ids.dtype} {list(ids.shape)}")
    if C.is_concrete(ids) and ids.size and bool(jnp.any(ids < 0)):
        raise ValueError(f"{fn}: cluster_ids must be >= 0")
    return ids.astype(jnp.int32)


class ClusterBatches(NamedTuple):
    """``indices [N // batch_size, batch_size]`` and ``single_cluster [N // batch_size]`` (bool)."""

    indices: jax.Array
    single_cluster: jax.Array


@SAMPLERS.register("cluster_batches")
def cluster_batches(key, cluster_ids, batch_size: int) -> ClusterBatches:
    r"""One epoch of batches whose members share a cluster (NGAME / topic-aware batching).

    Items are shuffled inside their cluster; cluster ``c`` with ``n_c`` items fills
    ``floor(n_c / batch_size)`` single-cluster batches and its ``n_c mod batch_size``
    leftovers are pooled, shuffled and cut into mixed batches (flagged
    ``single_cluster=False``); the batch order is then shuffled. Every item appears at
    most once; the ``N mod batch_size`` items left after the last full batch are dropped
    (a different set each epoch). In-batch negatives from the same cluster are harder, the
    point of the method.

    Args:
      key: a ``jax.random`` key (one per epoch).
      cluster_ids: ``[N]`` int ``>= 0`` (e.g. ``kmeans(...).assignments``).
      batch_size: ``1 <= batch_size <= N``.

    Returns:
      :class:`ClusterBatches`; ``indices`` are item indices.

    References:
      Dahiya et al., *NGAME: Negative Mining-aware Mini-batching for Extreme
      Classification*, WSDM 2023. Hofstätter et al., *Efficiently Teaching an Effective
      Dense Retriever with Balanced Topic Aware Sampling*, SIGIR 2021.
    """
    fn = "cluster_batches"
    ids = _cluster_ids(fn, cluster_ids)
    n = ids.shape[0]
    bs = C.integer(fn, "batch_size", batch_size, 1)
    if bs > n:
        raise ValueError(f"{fn}: batch_size must be <= N = {n}, got {bs}")
    k1, k2, k3 = jax.random.split(key, 3)
    # items grouped by cluster, in random order inside each cluster
    order = jnp.lexsort((jax.random.uniform(k1, (n,)), ids))
    sid = ids[order]
    start = jnp.searchsorted(sid, sid, side="left")  # first slot of the item's cluster
    size = jnp.searchsorted(sid, sid, side="right") - start
    rank = jnp.arange(n) - start
    full = rank < (size // bs) * bs  # inside one of its cluster's full batches
    # full-batch items first (cluster blocks are multiples of bs, so they stay aligned), then leftovers shuffled
    key2 = jnp.where(full, 0.0, 1.0 + jax.random.uniform(k2, (n,)))
    order = order[jnp.argsort(key2, stable=True)]
    nb = n // bs
    batches = order[: nb * bs].reshape(nb, bs)
    pure = jnp.arange(nb) < jnp.sum(full) // bs
    perm = jax.random.permutation(k3, nb)
    return ClusterBatches(batches[perm].astype(jnp.int32), pure[perm])


class TASBatch(NamedTuple):
    """``queries [batch_size]``, ``pairs [batch_size]`` (column of ``margins``) and ``mask [batch_size]``."""

    queries: jax.Array
    pairs: jax.Array
    mask: jax.Array


@SAMPLERS.register("tas_balanced")
def tas_balanced(key, cluster_ids, margins, batch_size: int, *, num_bins: int = 10, pair_mask=None) -> TASBatch:
    r"""One TAS-Balanced batch: queries of one topic, teacher-margin-balanced pairs.

    1. A topic ``c`` is drawn uniformly among the non-empty clusters of ``cluster_ids``.
    2. ``batch_size`` of its queries are drawn without replacement (Gumbel-top-k); if the
       topic has fewer, the rest of the batch is padding (``mask=False``).
    3. For each query, its valid pairs' teacher margins ``m_qj = s(q, d+) - s(q, d-_j)`` are
       cut into ``num_bins`` equal-width bins over ``[min_j m_qj, max_j m_qj]``; a non-empty
       bin is drawn uniformly and a pair uniformly inside it, i.e. pair ``j`` has
       probability ``1 / (#non-empty bins * #pairs in j's bin)``. Easy (large-margin) and
       hard pairs are thereby balanced whatever their raw frequencies.

    Args:
      key: a ``jax.random`` key (one per batch; ``jax.vmap`` over keys for many batches).
      cluster_ids: ``[Q]`` topic of each query (e.g. ``kmeans`` of query embeddings).
      margins: ``[Q, P]`` teacher margins of each query's ``P`` (positive, negative) pairs.
      batch_size: queries per batch (``>= 1``).
      num_bins: margin bins (``>= 1``; the paper uses 10).
      pair_mask: optional bool ``[Q, P]``, ``False`` for a missing pair. A query without
        valid pairs is never drawn.

    Returns:
      :class:`TASBatch` ``(queries, pairs, mask)``.

    References:
      Hofstätter et al., *Efficiently Teaching an Effective Dense Retriever with Balanced
      Topic Aware Sampling*, SIGIR 2021.
    """
    fn = "tas_balanced"
    ids = _cluster_ids(fn, cluster_ids)
    nq = ids.shape[0]
    mg = C.as_float_array(fn, "margins", margins, 2, "[Q, P]").astype(jnp.float32)
    if mg.shape[0] != nq:
        raise ValueError(f"{fn}: margins must have shape [Q, P] with Q={nq}, got {list(mg.shape)}")
    bs = C.integer(fn, "batch_size", batch_size, 1)
    nbins = C.integer(fn, "num_bins", num_bins, 1)
    valid = jnp.isfinite(mg)
    if pair_mask is not None:
        pm = jnp.asarray(pair_mask)
        if pm.shape != mg.shape or pm.dtype != jnp.bool_:
            raise ValueError(f"{fn}: pair_mask must be bool with the shape of margins {list(mg.shape)}, got {pm.dtype} {list(pm.shape)}")
        valid = valid & pm
    usable = jnp.any(valid, axis=1)  # [Q]
    kc, kq, kp = jax.random.split(key, 3)
    # uniform over the distinct topics that have a usable query: the first of each run of a sorted copy
    big = jnp.iinfo(jnp.int32).max
    sid = jnp.sort(jnp.where(usable, ids, big))
    first = (sid != big) & jnp.concatenate([jnp.ones((1,), bool), sid[1:] != sid[:-1]])
    topic = sid[jax.random.categorical(kc, jnp.where(first, 0.0, -jnp.inf))]
    z = jnp.where((ids == topic) & usable, jax.random.gumbel(kq, (nq,)), -jnp.inf)
    v, qs = lax.top_k(z, min(bs, nq))
    ok = v > -jnp.inf
    if bs > nq:
        qs = jnp.pad(qs, (0, bs - nq))
        ok = jnp.pad(ok, (0, bs - nq))
    m, vm = mg[qs], valid[qs]  # [bs, P]
    lo = jnp.min(jnp.where(vm, m, jnp.inf), axis=1, keepdims=True)
    hi = jnp.max(jnp.where(vm, m, -jnp.inf), axis=1, keepdims=True)
    width = jnp.where(hi > lo, hi - lo, 1.0)
    bins = jnp.clip(jnp.floor((m - lo) / width * nbins), 0, nbins - 1).astype(jnp.int32)
    onehot = (bins[:, :, None] == jnp.arange(nbins)) & vm[:, :, None]  # [bs, P, nbins]
    per_bin = jnp.sum(onehot, axis=1)  # [bs, nbins]
    filled = jnp.sum(per_bin > 0, axis=1, keepdims=True)
    count = jnp.take_along_axis(per_bin, bins, axis=1)  # pairs in each pair's bin
    logp = jnp.where(vm, -jnp.log(jnp.maximum(count * filled, 1).astype(jnp.float32)), -jnp.inf)
    pairs = jax.random.categorical(kp, logp, axis=1).astype(jnp.int32)
    return TASBatch(jnp.where(ok, qs, -1).astype(jnp.int32), jnp.where(ok, pairs, -1), ok)
