"""Random negatives: uniform (with exclusions), popularity (with log-Q), SimANS."""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
from jax import lax

from jaxneg import _checks as C
from jaxneg.registry import SAMPLERS
from jaxneg.samplers.mining import Mined, _exclude


def _shape(fn, shape):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{fn}: shape must be a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{fn}: shape must be non-negative, got {shape}")
    return shape


@SAMPLERS.register("uniform", train="per_query")
def uniform(key, num_items: int, shape, *, exclude=None):
    r"""Item indices drawn uniformly (with replacement) from ``[0, num_items)`` minus ``exclude``.

    Without ``exclude`` every index has probability ``1 / N``. With ``exclude [B, P]``
    (row ``b``'s positives; entries outside ``[0, N)``, e.g. ``-1`` padding, and repeats
    are ignored) the draws of row ``b`` are uniform over the ``N - u_b`` allowed items,
    where ``u_b`` is the number of distinct excluded items, with no rejection loop: draw
    ``r ~ U{0, ..., N - u_b - 1}`` and return ``r + #{j : e_j - j <= r}`` for the sorted
    distinct exclusions ``e_0 < e_1 < ...`` (the ``r``-th allowed item). A row with no
    allowed item returns ``-1``.

    Args:
      key: a ``jax.random`` key.
      num_items: ``N >= 1`` (static).
      shape: output shape; with ``exclude`` it must start with ``B``, e.g. ``(B, K)``.
      exclude: optional ``[B, P]`` int.

    Returns:
      int32 indices of ``shape``.
    """
    fn = "uniform"
    n = C.integer(fn, "num_items", num_items, 1)
    shape = _shape(fn, shape)
    if exclude is None:
        return jax.random.randint(key, shape, 0, n, jnp.int32)
    if not shape:
        raise ValueError(f"{fn}: with exclude, shape must start with B, got ()")
    ex = _exclude(fn, exclude, shape[0])
    p = ex.shape[1]
    big = n + p  # sentinel: e - j stays > any draw for every slot j < p
    e = jnp.sort(jnp.where((ex >= 0) & (ex < n), ex, big), axis=1)
    dup = jnp.concatenate([jnp.zeros((e.shape[0], 1), bool), e[:, 1:] == e[:, :-1]], axis=1)
    e = jnp.sort(jnp.where(dup, big, e), axis=1)
    allowed = n - jnp.sum(e < n, axis=1)  # [B]
    expand = (slice(None),) + (None,) * (len(shape) - 1)
    r = jax.random.randint(key, shape, 0, jnp.maximum(allowed, 1)[expand], jnp.int32)
    shifted = e - jnp.arange(p, dtype=jnp.int32)  # [B, P]
    count = jnp.sum(shifted[expand + (slice(None),)][..., :] <= r[..., None], axis=-1, dtype=jnp.int32)
    return jnp.where(allowed[expand] > 0, r + count, -1)


def _counts_logits(fn, counts, alpha):
    counts = jnp.asarray(counts)
    if counts.ndim != 1 or counts.shape[0] == 0:
        raise ValueError(f"{fn}: counts must have shape [N] with N >= 1, got shape {list(counts.shape)}")
    C.scalar(fn, "alpha", alpha, low=0.0, low_inclusive=True)
    if C.is_concrete(counts) and bool(jnp.any(counts < 0)):
        raise ValueError(f"{fn}: counts must be non-negative")
    if C.is_concrete(counts) and not bool(jnp.any(counts > 0)):
        raise ValueError(f"{fn}: counts must have at least one positive entry")
    c = counts.astype(jnp.float32)
    return jnp.where(c > 0, alpha * jnp.log(jnp.where(c > 0, c, 1.0)), -jnp.inf)


def _inverse_cdf(p, u1, u2):
    """Index ``i`` with ``P(i) = p_i / sum(p)`` for uniforms ``u1, u2`` (two-level inverse CDF).

    A single fp32 CDF over ``N`` items cannot resolve probabilities below ~1e-7 (neither
    ``u`` nor the cumulative sum has the bits). Here the items are cut into ``nb`` blocks of
    ``S ~ sqrt(N)``: ``u1`` picks a block from the block CDF and ``u2`` an item from that
    block's local CDF (a vectorised binary search), so each level only resolves ratios down
    to ``1/S`` of its own mass. Zero-probability items are never returned.
    """
    n = p.shape[0]
    s = max(1, int(math.isqrt(n - 1)) + 1) if n > 1 else 1
    nb = -(-n // s)
    pb = jnp.pad(p, (0, nb * s - n)).reshape(nb, s)
    local = jnp.cumsum(pb, axis=1)  # [nb, S]
    mass = local[:, -1]
    cdf = jnp.cumsum(mass)
    nz_block = jnp.max(jnp.where(mass > 0, jnp.arange(nb), -1))
    last_nz = jnp.max(jnp.where(pb > 0, jnp.arange(s)[None, :], -1), axis=1)  # [nb]
    blk = jnp.minimum(jnp.searchsorted(cdf, u1 * cdf[-1], side="right"), nz_block)
    t = u2 * mass[blk]
    lo, hi = jnp.zeros_like(blk), jnp.full_like(blk, s)

    def step(_, lh):  # first column whose local CDF exceeds t
        lo, hi = lh
        mid = (lo + hi) // 2
        right = local[blk, jnp.minimum(mid, s - 1)] <= t
        return jnp.where(right, mid + 1, lo), jnp.where(right, hi, mid)

    lo, _ = lax.fori_loop(0, int(math.ceil(math.log2(s))) + 1, step, (lo, hi))
    return (blk * s + jnp.minimum(lo, last_nz[blk])).astype(jnp.int32)


def _log_q(fn, counts, alpha):
    logits = _counts_logits(fn, counts, alpha)
    return logits - jax.nn.logsumexp(logits)


def popularity_log_q(counts, *, alpha: float = 0.75):
    r"""``log Q(i) = alpha log counts_i - log sum_j counts_j^alpha`` for every item ``[N]``
    (``-inf`` where ``counts_i = 0``): the distribution :func:`popularity` draws from, e.g. for
    the log-Q correction of the positives."""
    return _log_q("popularity_log_q", counts, alpha)


@SAMPLERS.register("popularity", train="shared")
def popularity(key, counts, shape, *, alpha: float = 0.75):
    r"""Items drawn (with replacement) with probability ``Q(i) ∝ counts_i ** alpha``.

    ``alpha = 0.75`` is word2vec's unigram^0.75 distribution, ``alpha = 1`` the raw
    popularity, ``alpha = 0`` uniform over the items seen at least once; items with
    count 0 are never drawn. Sampling is an exact two-level inverse CDF (see
    ``_inverse_cdf``), ``O(N + |shape| log N)``, so it stays accurate for tail items of
    corpora with millions of entries. ``log_q`` is ``log Q(i)`` of each draw, the term
    :func:`jaxneg.losses.sampled_softmax` subtracts (``log_q=``) to undo the sampling bias.

    Args:
      key: a ``jax.random`` key.
      counts: ``[N]`` non-negative frequencies.
      shape: output shape, e.g. ``(B, K)``.
      alpha: exponent ``>= 0``.

    Returns:
      ``(indices, log_q)``: int32 and fp32 arrays of ``shape``.

    References:
      Mikolov et al., *Distributed Representations of Words and Phrases and their
      Compositionality*, 2013. Yi et al., *Sampling-Bias-Corrected Neural Modeling for
      Large Corpus Item Recommendations*, RecSys 2019.
    """
    fn = "popularity"
    shape = _shape(fn, shape)
    log_q = _log_q(fn, counts, alpha)
    k1, k2 = jax.random.split(key)
    u1 = jax.random.uniform(k1, shape)
    u2 = jax.random.uniform(k2, shape)
    idx = _inverse_cdf(jnp.exp(log_q), u1.reshape(-1), u2.reshape(-1)).reshape(shape)
    return idx, log_q[idx]


@SAMPLERS.register("simans", train="mined")
def simans(key, scores, positive_scores, k: int, *, a: float = 1.0, b: float = 0.0, exclude=None) -> Mined:
    r"""SimANS: ambiguous negatives sampled without replacement around the positive's score.

    Each candidate ``j`` of query ``i`` gets weight ``p_ij ∝ exp(-a (s_ij - s+_i - b)^2)``,
    largest for negatives scored close to the positive (neither easy nor likely false
    negatives); ``k`` of them are drawn without replacement by the Gumbel-top-k trick
    (``argtop_k(log p_ij + G_ij)``, ``G ~ Gumbel(0, 1)``, which is sequential sampling
    without replacement). Candidates with a non-finite score (e.g. the padding of
    :func:`hard_topk`) and those in ``exclude`` are never drawn.

    Args:
      key: a ``jax.random`` key.
      scores: ``[B, N]`` candidate scores (e.g. the top-N retrieved by :func:`hard_topk`).
      positive_scores: ``[B]``.
      k: draws per query (``1 <= k <= N``).
      a: sharpness ``> 0``; b: offset of the peak from the positive's score.
      exclude: optional ``[B, P]`` candidate positions (columns of ``scores``) to skip.

    Returns:
      :class:`Mined` with ``indices [B, k]`` into the columns of ``scores``, their scores
      and a mask (``False`` where fewer than ``k`` candidates were allowed).

    References:
      Zhou et al., *SimANS: Simple Ambiguous Negatives Sampling for Dense Text Retrieval*,
      EMNLP 2022.
    """
    fn = "simans"
    s = C.as_float_array(fn, "scores", scores, 2, "[B, N]").astype(jnp.float32)
    bsz, n = s.shape
    pos = C.as_float_array(fn, "positive_scores", positive_scores, 1, "[B]").astype(jnp.float32)
    if pos.shape[0] != bsz:
        raise ValueError(f"{fn}: positive_scores must have shape [B] = [{bsz}], got {list(pos.shape)}")
    k = C.integer(fn, "k", k, 1)
    if k > n:
        raise ValueError(f"{fn}: k must be <= N = {n} (columns of scores), got {k}")
    C.scalar(fn, "a", a, low=0.0)
    C.scalar(fn, "b", b)
    logw = -a * jnp.square(s - pos[:, None] - b)
    ok = jnp.isfinite(s)
    ex = _exclude(fn, exclude, bsz)
    if ex is not None:
        ok = ok & ~jnp.any(jnp.arange(n)[None, :, None] == ex[:, None, :], axis=2)
    z = jnp.where(ok, logw + jax.random.gumbel(key, s.shape, jnp.float32), -jnp.inf)
    v, i = lax.top_k(z, k)
    got = v > -jnp.inf
    i = jnp.where(got, i, -1)
    return Mined(i, jnp.where(got, jnp.take_along_axis(s, jnp.maximum(i, 0), axis=1), -jnp.inf), got)


@SAMPLERS.register("subsample")
def subsample(key, candidates, n):
    r"""Keep ``n`` random candidates of each row: a fresh uniformly random subset per row and key.

    Row ``i`` keeps ``k_i = min(n, c_i)`` of its ``c_i`` candidate columns (``candidates[i, j]``
    True), every ``k_i``-subset equally likely. Each column draws a random key, unique in its row,

        key_ij = (b_ij >> s) << s | j,      b_ij ~ U{0, ..., 2^32 - 1},   s = ceil(log2 C),

    and the row keeps the candidates with the ``k_i`` smallest keys: those at or below the threshold
    ``t_i = min{t : #{j candidate : key_ij <= t} >= k_i}``, found by bisection over the 32-bit keys
    (32 counting passes over ``[R, C]``, no sort; a sort made this 9.8 ms of a 32 ms train step on
    CPU, bisection 0.4 ms). The keys are unique, so exactly ``k_i`` are kept. Two columns whose
    ``32 - s`` random bits tie (probability about ``C^2 / 2^(33 - s)`` per row) are ordered by column.
    Used to isolate the number of negatives per anchor at a fixed batch: the dropped columns go to a
    loss' ``mask`` (``infonce(mask=~keep)``, ``ntxent(mask=~keep)``).

    Args:
      key: a ``jax.random`` key.
      candidates: bool ``[R, C]``, ``C <= 2^24``: the columns row ``i`` may keep (e.g. every
        in-batch key but its own positive).
      n: negatives to keep per row, an int ``>= 1`` (may be traced, e.g. a swept
        hyperparameter; then ``n < 1`` keeps none).

    Returns:
      bool ``[R, C]``, True for the kept columns (a subset of ``candidates``).
    """
    fn = "subsample"
    candidates = jnp.asarray(candidates)
    if candidates.ndim != 2 or candidates.dtype != jnp.bool_:
        raise ValueError(f"{fn}: candidates must be bool of shape [R, C], got {candidates.dtype} "
                         f"{list(candidates.shape)}")
    r, c = candidates.shape
    if c > 2 ** 24:
        raise ValueError(f"{fn}: candidates may have at most 2^24 columns (8 random bits per key), got {c}")
    if C.is_concrete(n):
        if isinstance(n, bool) or not (isinstance(n, numbers.Integral) or (hasattr(n, "dtype") and
                                       jnp.issubdtype(n.dtype, jnp.integer) and jnp.ndim(n) == 0)) or int(n) < 1:
            raise ValueError(f"{fn}: n (negatives kept per row) must be an int >= 1, got {n!r}")
    shift = max(1, (c - 1).bit_length())
    keys = (jax.random.bits(key, (r, c), jnp.uint32) >> shift << shift) | jnp.arange(c, dtype=jnp.uint32)
    target = jnp.minimum(jnp.asarray(n, jnp.int32), jnp.sum(candidates, axis=1, dtype=jnp.int32))

    lo, hi = jnp.zeros(r, jnp.uint32), jnp.full(r, 2 ** 32 - 1, jnp.uint32)
    for _ in range(32):  # invariant: count(hi) >= target, and count(t) < target for every t < lo
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(candidates & (keys <= mid[:, None]), axis=1, dtype=jnp.int32) >= target
        lo, hi = jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)
    return candidates & (keys <= lo[:, None]) & (target > 0)[:, None]
