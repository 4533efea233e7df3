"""Pair-mining metric-learning losses over a labelled batch: triplet and multi-similarity.

These mine pairs inside one ``[B, B]`` similarity matrix, so they are dense only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxneg import _checks as C
from jaxneg.losses._pairwise import acc_dtype, masked_lse
from jaxneg.losses.contrastive import _maybe_normalize
from jaxneg.registry import LOSSES

DISTANCES = ("euclidean", "squared", "cosine")
MINING = ("batch_hard", "all", "semihard")


def _inputs(fn, embeddings, labels):
    embeddings = C.as_float_array(fn, "embeddings", embeddings, 2, "[B, D]")
    labels = C.as_label_array(fn, "labels", labels, embeddings.shape[0])
    return embeddings, labels


def _pair_masks(labels):
    same = labels[:, None] == labels[None, :]
    eye = jnp.eye(labels.shape[0], dtype=bool)
    return same & ~eye, ~same


def pairwise_distance(x, distance: str = "euclidean"):
    """``[B, B]`` distances in fp32: Euclidean, squared Euclidean, or ``1 - cosine``.

    The Euclidean distance is ``sqrt(max(d2, 1e-12))`` so duplicates get a finite gradient.
    """
    x = x.astype(acc_dtype(x))
    if distance == "cosine":
        return 1.0 - x @ x.T
    sq = jnp.sum(x * x, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    return d2 if distance == "squared" else jnp.sqrt(jnp.maximum(d2, 1e-12))


@LOSSES.register("triplet", inputs="labelled", labels=True)
def triplet(
    embeddings,
    labels,
    *,
    margin=0.2,
    mining: str = "batch_hard",
    distance: str = "euclidean",
    normalize: bool = True,
    reduction: str = "mean",
):
    r"""Triplet margin loss with in-batch mining, ``[m + d(a, p) - d(a, n)]_+``.

    * ``"batch_hard"`` (Hermans et al.): per anchor the farthest positive and the closest
      negative, ``loss_a = [m + max_p d_ap - min_n d_an]_+``; mean over anchors that have
      both a positive and a negative.
    * ``"all"`` ("batch all", Hermans et al.): every valid triplet; mean over the *active*
      (non-zero) triplets. Per anchor (``reduction="none"``): its active-triplet mean.
    * ``"semihard"`` (Schroff et al., TF-Addons semantics): for every positive pair the
      closest negative farther than the positive, else the farthest negative; mean over
      positive pairs (whose anchor has a negative). Per anchor: mean over its pairs.

    Args:
      embeddings: ``[B, D]``; labels: ``[B]`` ints.
      margin: ``m >= 0``.
      distance: ``"euclidean"``, ``"squared"`` or ``"cosine"`` (``1 - cos``).

    References:
      Schroff et al., *FaceNet*, CVPR 2015. Hermans et al., *In Defense of the Triplet
      Loss for Person Re-Identification*, 2017.
    """
    fn = "triplet"
    embeddings, labels = _inputs(fn, embeddings, labels)
    C.scalar(fn, "margin", margin, low=0.0, low_inclusive=True)
    C.choice(fn, "mining", mining, MINING)
    C.choice(fn, "distance", distance, DISTANCES)
    C.reduction(fn, reduction)
    dist = pairwise_distance(_maybe_normalize(embeddings, normalize), distance)
    pos, neg = _pair_masks(labels)
    has_neg = jnp.any(neg, axis=1)
    big = jnp.asarray(jnp.finfo(dist.dtype).max, dist.dtype)

    if mining == "batch_hard":
        hardest_pos = jnp.max(jnp.where(pos, dist, -big), axis=1)
        hardest_neg = jnp.min(jnp.where(neg, dist, big), axis=1)
        valid = jnp.any(pos, axis=1) & has_neg
        per = jnp.where(valid, jax.nn.relu(margin + hardest_pos - jnp.where(valid, hardest_neg, 0.0)), 0.0)
        if reduction == "none":
            return per
        total = jnp.sum(per)
        return total / jnp.maximum(jnp.sum(valid), 1) if reduction == "mean" else total

    if mining == "all":
        l = margin + dist[:, :, None] - dist[:, None, :]  # [a, p, n]
        valid = pos[:, :, None] & neg[:, None, :]
        l = jnp.where(valid, jax.nn.relu(l), 0.0)
        active = valid & (l > 0)
        if reduction == "none":
            return jnp.sum(l, axis=(1, 2)) / jnp.maximum(jnp.sum(active, axis=(1, 2)), 1)
        total = jnp.sum(l)
        return total / jnp.maximum(jnp.sum(active), 1) if reduction == "mean" else total

    # semihard: for each (a, p), the closest negative with d_an > d_ap, else the farthest.
    outside = neg[:, None, :] & (dist[:, None, :] > dist[:, :, None])  # [a, p, n]
    closest_outside = jnp.min(jnp.where(outside, dist[:, None, :], big), axis=2)
    farthest = jnp.max(jnp.where(neg, dist, -big), axis=1)[:, None]
    chosen = jnp.where(jnp.any(outside, axis=2), closest_outside, farthest)
    pairs = pos & has_neg[:, None]
    l = jnp.where(pairs, jax.nn.relu(margin + dist - jnp.where(pairs, chosen, 0.0)), 0.0)
    if reduction == "none":
        return jnp.sum(l, axis=1) / jnp.maximum(jnp.sum(pairs, axis=1), 1)
    total = jnp.sum(l)
    return total / jnp.maximum(jnp.sum(pairs), 1) if reduction == "mean" else total


@LOSSES.register("multi_similarity", inputs="labelled", labels=True)
def multi_similarity(
    embeddings,
    labels,
    *,
    alpha=2.0,
    beta=50.0,
    base=0.5,
    epsilon=0.1,
    normalize: bool = True,
    reduction: str = "mean",
):
    r"""Multi-similarity loss with its own pair mining (Wang et al. 2019).

    With cosine similarities ``S``, positives ``P_i`` (same label, not ``i``) and negatives
    ``N_i`` (other labels), mining keeps ``n in N_i`` with ``S_in + eps > min_{p in P_i} S_ip``
    and ``p in P_i`` with ``S_ip - eps < max_{n in N_i} S_in``; then::

        loss_i = 1/alpha log(1 + sum_{p kept} e^{-alpha (S_ip - base)})
               + 1/beta  log(1 + sum_{n kept} e^{ beta (S_in - base)})

    and ``loss_i = 0`` when no positive or no negative is kept; the mean is over all ``B``
    anchors (as the official code). Self-pairs are excluded by index (the official code
    uses ``S < 1 - 1e-5``, which also drops exact duplicates).

    Args:
      embeddings: ``[B, D]``; labels: ``[B]``.
      alpha, beta: positive/negative scales ``> 0``; base: the similarity margin ``lambda``;
      epsilon: mining margin ``>= 0``.

    References:
      Wang et al., *Multi-Similarity Loss with General Pair Weighting for Deep Metric
      Learning*, CVPR 2019.
    """
    fn = "multi_similarity"
    embeddings, labels = _inputs(fn, embeddings, labels)
    C.scalar(fn, "alpha", alpha, low=0.0)
    C.scalar(fn, "beta", beta, low=0.0)
    C.scalar(fn, "base", base)
    C.scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=True)
    C.reduction(fn, reduction)
    z = _maybe_normalize(embeddings, normalize)
    z = z.astype(acc_dtype(z))
    sim = z @ z.T
    pos, neg = _pair_masks(labels)
    big = jnp.asarray(jnp.finfo(sim.dtype).max, sim.dtype)
    min_pos = jax.lax.stop_gradient(jnp.min(jnp.where(pos, sim, big), axis=1, keepdims=True))
    max_neg = jax.lax.stop_gradient(jnp.max(jnp.where(neg, sim, -big), axis=1, keepdims=True))
    neg_kept = neg & (sim + epsilon > min_pos)
    pos_kept = pos & (sim - epsilon < max_neg)
    valid = jnp.any(neg_kept, axis=1) & jnp.any(pos_kept, axis=1)
    pos_loss = jax.nn.softplus(masked_lse(-alpha * (sim - base), pos_kept, 1)) / alpha
    neg_loss = jax.nn.softplus(masked_lse(beta * (sim - base), neg_kept, 1)) / beta
    return C.reduce(jnp.where(valid, pos_loss + neg_loss, 0.0), reduction)
