"""Batch-contrastive losses: InfoNCE/CLIP, NT-Xent, DCL, debiased, HCL, SupCon, SigLIP, soft targets.

Notation shared by the docstrings: ``q_i``, ``k_j`` are the (L2-normalised unless
``normalize=False``) embeddings, ``s_ij = <q_i, k_j>``, ``t`` the temperature and
``x_ij = s_ij / t`` the logits. ``LSE_{j in S} x_j = log sum_{j in S} exp(x_j)``.

Every loss returns the mean over anchors (``reduction="mean"``), their sum
(``"sum"``) or the per-anchor values (``"none"``). Losses that accept ``block_size``
never form the ``[B, M]`` logit matrix when it is given (see ``_pairwise``).

Cross-device negatives: ``infonce``, ``ntxent``, ``debiased``, ``hard_negative``,
``supcon`` and ``siglip`` take ``axis_name=`` when called inside ``jax.shard_map``
with the batch sharded over that mesh axis. Each device passes its own ``B`` rows
(and its own shared ``negatives`` and ``labels``, which must be globally meaningful);
every anchor is contrasted with the keys of all ``W`` devices, so the value is the loss
of the concatenated global batch of ``W B`` (``"mean"``/``"sum"`` are over all devices'
anchors, identical on every device; ``"none"`` returns this device's anchors). The
gradient with respect to each device's inputs is that of the global loss: no
world-size rescaling is needed. ``gather="all_gather"`` gathers the keys
(``lax.all_gather``; memory ``O(W B D)`` per device); ``gather="ring"`` passes key
shards around with ``lax.ppermute`` and a running log-sum-exp (memory ``O(B D)``, and
with ``block_size`` also ``O(B * block_size)`` logits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxneg import _checks as C
from jaxneg._array import l2_normalize
from jaxneg.losses._pairwise import EXTRA, GATHERS, PAD, Lse, Meta, Sum, acc_dtype, masked_lse, pair_stats
from jaxneg.registry import LOSSES


def _maybe_normalize(x, normalize: bool):
    return l2_normalize(x) if normalize else x


def _bound(normalize: bool):
    """``|<q, k>| <= 1`` for normalised rows: lets ``pair_stats`` stream with a fixed shift."""
    return 1.0 if normalize else None


def _rowdot(a, b):
    """``sum(a * b, -1)`` in the accumulation dtype (fp32, or fp64 for fp64 inputs)."""
    acc = acc_dtype(a, b)
    return jnp.sum(a.astype(acc) * b.astype(acc), axis=-1)


def _log1p_exp_gap(lse_neg, pos):
    """``-pos + log(e^pos + e^lse_neg)`` as ``softplus(lse_neg - pos)``.

    Same value, but a small loss keeps its relative precision (``logaddexp(pos, .) - pos``
    cancels two numbers of size ``1/t``); ``lse_neg = -inf`` (no negatives) gives exactly 0.
    """
    return jax.nn.softplus(lse_neg - pos)


def _temperature(fn, temperature):
    """``1 / temperature`` in the accumulation dtype; a NumPy scalar when the temperature is concrete
    (a constant the streamed path can read, e.g. for its fixed shift), else a traced array."""
    C.scalar(fn, "temperature", temperature, low=0.0)
    dtype = acc_dtype(jnp.asarray(temperature))
    if C.is_concrete(temperature):
        return np.asarray(1.0, dtype) / np.asarray(temperature, dtype)
    return 1.0 / jnp.asarray(temperature, dtype)


def _pair_inputs(fn, query, key):
    query = C.as_float_array(fn, "query", query, 2, "[B, D]")
    key = C.as_float_array(fn, "key", key, 2, "[B, D]")
    C.same_shape(fn, "key", key, "query", query)
    return query, key


def _shard(fn, axis_name, gather, b):
    """``(offset, world)``: this device's first global row id and the number of devices.

    Outside ``shard_map`` (``axis_name=None``) this is ``(0, 1)``.
    """
    if axis_name is None:
        return 0, 1
    C.choice(fn, "gather", gather, GATHERS)
    try:
        world = lax.axis_size(axis_name)
    except NameError as e:
        raise ValueError(
            f"{fn}: axis_name={axis_name!r} is not a bound mesh axis; call the loss inside "
            f"jax.shard_map over a mesh with that axis"
        ) from e
    return lax.axis_index(axis_name).astype(jnp.int32) * b, world


def _two_views(fn, z1, z2, normalize, min_batch=1, axis_name=None, gather="all_gather"):
    """Stack two views ``[B, D]`` into ``z [2B, D]`` with SimCLR metadata.

    Row ``i`` and row ``i + B`` are views of sample ``i``: the label of a row is its
    sample id, so ``include="neg"`` keeps the ``2B - 2`` rows of other samples. With
    ``axis_name`` the ids are global (``W`` devices of ``B`` samples each: sample
    ``offset + i``, views ``offset + i`` and ``W B + offset + i``). Returns ``(z, B, W, meta)``.
    """
    z1 = C.as_float_array(fn, "z1", z1, 2, "[B, D]")
    z2 = C.as_float_array(fn, "z2", z2, 2, "[B, D]")
    C.same_shape(fn, "z2", z2, "z1", z1)
    b = z1.shape[0]
    off, world = _shard(fn, axis_name, gather, b)
    if b * world < min_batch:
        raise ValueError(f"{fn}: needs a batch of at least {min_batch} samples, got z1 of shape {list(z1.shape)}")
    z = jnp.concatenate([_maybe_normalize(z1, normalize), _maybe_normalize(z2, normalize)])
    sample = off + jnp.arange(b, dtype=jnp.int32)
    pos_id = jnp.concatenate([sample, sample + world * b])
    sample = jnp.concatenate([sample, sample])
    return z, b, world, Meta(pos_id, sample, pos_id, sample)


def _with_extra(fn, z, meta, negatives, negatives_mask, mask, world, normalize):
    """``(columns, meta)`` of the two-view rows ``z [2B, D]`` plus shared extra ``negatives [M, D]``
    (``negatives_mask [M]`` marks padding) and a pair ``mask`` over ``W (2B + M)`` columns."""
    rows, d = z.shape
    cols = z
    if negatives is not None:
        shared = _maybe_normalize(C.as_float_array(fn, "negatives", negatives, 2, f"[M, {d}]"), normalize)
        if shared.shape[1] != d:
            raise ValueError(f"{fn}: negatives must have shape [M, D] with D={d}, got {list(shared.shape)}")
        pos = jnp.full((shared.shape[0],), EXTRA, jnp.int32)
        if negatives_mask is not None:
            negatives_mask = jnp.asarray(negatives_mask)
            if negatives_mask.shape != pos.shape or negatives_mask.dtype != jnp.bool_:
                raise ValueError(f"{fn}: negatives_mask must be bool of shape [M] = {list(pos.shape)}, got "
                                 f"{negatives_mask.dtype} {list(negatives_mask.shape)}")
            pos = jnp.where(negatives_mask, pos, PAD)
        cols = jnp.concatenate([z, shared.astype(z.dtype)])
        meta = meta._replace(col_pos=jnp.concatenate([meta.col_pos, pos]),
                             col_label=jnp.concatenate([meta.col_label, jnp.full(pos.shape, EXTRA, jnp.int32)]))
    elif negatives_mask is not None:
        raise ValueError(f"{fn}: negatives_mask needs negatives")
    if mask is not None:
        mask = jnp.asarray(mask)
        want = (rows, world * cols.shape[0])
        if mask.shape != want or mask.dtype != jnp.bool_:
            raise ValueError(f"{fn}: mask must be bool of shape [2B, W (2B + M)] = {list(want)}, got {mask.dtype} "
                             f"{list(mask.shape)}")
        meta = meta._replace(drop=mask)
    return cols, meta


def _positive_logits(z, b, scale):
    """``x_{i, partner(i)}`` for the 2B rows of ``_two_views``."""
    s = _rowdot(z[:b], z[b:])
    return scale * jnp.concatenate([s, s])


# ----------------------------------------------------------------------------- InfoNCE


@LOSSES.register("infonce",
                 inputs="pair", streams=True, cross_device=True, scale="temperature", extra_negatives=True, labels=True)
def infonce(
    query,
    key,
    *,
    temperature=0.07,
    symmetric: bool = False,
    labels=None,
    negatives=None,
    negatives_mask=None,
    mask=None,
    margin=0.0,
    normalize: bool = True,
    reduction: str = "mean",
    block_size: int | None = None,
    axis_name=None,
    gather: str = "all_gather",
):
    r"""InfoNCE / CLIP loss with in-batch negatives, optional extra negatives and label masking.

    For anchor ``i`` with positive logit ``p_i = (s_ii - margin) / t``::

        loss_i = -p_i + log( exp(p_i) + sum_{j in N(i)} exp(x_ij) + sum_k exp(x_ik^neg) )

    where ``N(i)`` are the in-batch keys ``j != i`` (with ``labels``: only keys whose label
    differs from ``labels[i]``, so same-label keys are dropped from the denominator as
    false negatives; with ``mask``: also not ``mask[i, j]``), plus the shared extra
    negatives ``[M, D]`` (not masked by ``mask[i, B + m]``); per-query negatives
    ``[B, K, D]`` add ``x_ik^neg = <q_i, n_ik> / t``; ``negatives_mask`` keeps only the
    negatives flagged ``True`` in either sum (padding from a miner, e.g. ``Mined.mask``,
    drops out of the denominator). With ``margin > 0`` this is the
    additive-margin softmax (AM-Softmax) on the positive. ``symmetric=True`` averages
    the query->key and key->query directions, ``(loss^{q->k}_i + loss^{k->q}_i) / 2``
    (CLIP; equals open_clip's ``ClipLoss`` with ``logit_scale = 1/t`` on normalised
    inputs); the key->query direction contrasts each key with the ``B`` queries only.
    A row with no negatives has loss 0.

    Args:
      query: ``[B, D]``.
      key: ``[B, D]``; ``key[i]`` is the positive of ``query[i]``.
      temperature: ``t > 0`` (may be traced, e.g. learnable).
      symmetric: average both directions (CLIP).
      labels: optional ``[B]`` int class/instance ids for false-negative masking.
      negatives: optional ``[M, D]`` (shared) or ``[B, K, D]`` (per query) extra negatives.
      negatives_mask: optional bool ``[M]`` (shared) or ``[B, K]`` (per query): ``True``
        marks a real negative, ``False`` padding that is left out of every denominator
        (e.g. :func:`jaxneg.samplers.hard_topk`'s ``mask`` where fewer than ``k`` survived).
      mask: optional bool ``[B, B + M]`` over the in-batch keys then the shared negatives;
        ``True`` drops the pair from both directions' denominators (e.g. a
        :func:`jaxneg.samplers.guided_mask`). The diagonal (the positive) must be ``False``.
        With ``axis_name``: ``[B, W (B + M)]``, every device's (keys, negatives) in device order.
      margin: additive margin on the positive cosine (``>= 0``).
      normalize: L2-normalise ``query``, ``key`` and ``negatives`` first.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B]``).
      block_size: stream over key blocks of this size (never forms ``[B, B + M]``).
      axis_name: inside ``jax.shard_map``, the mesh axis the batch is sharded over; the
        inputs are this device's rows and the loss is that of the global batch (see the
        module docstring).
      gather: ``"all_gather"`` or ``"ring"``: how the keys reach every device.

    References:
      van den Oord et al., *Representation Learning with Contrastive Predictive Coding*, 2018.
      Radford et al., *Learning Transferable Visual Models From Natural Language Supervision*, 2021.
      Wang et al., *Additive Margin Softmax for Face Verification*, 2018.
    """
    fn = "infonce"
    query, key = _pair_inputs(fn, query, key)
    b, d = query.shape
    scale = _temperature(fn, temperature)
    C.scalar(fn, "margin", margin, low=0.0, low_inclusive=True)
    C.reduction(fn, reduction)
    block_size = C.block_size(fn, block_size)
    off, world = _shard(fn, axis_name, gather, b)
    pos_id = off + jnp.arange(b, dtype=jnp.int32)
    row_label = pos_id if labels is None else C.as_label_array(fn, "labels", labels, b)

    q = _maybe_normalize(query, normalize)
    k = _maybe_normalize(key, normalize)
    shared = per_query = None
    if negatives is not None:
        negatives = jnp.asarray(negatives)
        if negatives.ndim == 2 and negatives.shape[1] == d:
            shared = _maybe_normalize(C.as_float_array(fn, "negatives", negatives, 2, "[M, D]"), normalize)
        elif negatives.ndim == 3 and negatives.shape[0] == b and negatives.shape[2] == d:
            per_query = _maybe_normalize(negatives, normalize)
        else:
            raise ValueError(
                f"{fn}: negatives must have shape [M, D] or [B, K, D] with B={b}, D={d}, "
                f"got shape {list(negatives.shape)}"
            )
    if negatives_mask is not None:
        if negatives is None:
            raise ValueError(f"{fn}: negatives_mask needs negatives")
        negatives_mask = jnp.asarray(negatives_mask)
        want = negatives.shape[:-1]
        if negatives_mask.shape != want or negatives_mask.dtype != jnp.bool_:
            raise ValueError(f"{fn}: negatives_mask must be bool of shape {'[M]' if shared is not None else '[B, K]'}"
                             f" = {list(want)}, got {negatives_mask.dtype} {list(negatives_mask.shape)}")

    cols = k if shared is None else jnp.concatenate([k, shared.astype(k.dtype)])
    col_pos, col_label = pos_id, row_label
    if shared is not None:
        # (only then: JAX 0.11 segfaults concatenating a zero-size array inside an un-jitted shard_map)
        extra_pos = jnp.full((shared.shape[0],), EXTRA, jnp.int32)
        if negatives_mask is not None:
            extra_pos = jnp.where(negatives_mask, extra_pos, PAD)  # PAD columns are in no set
        col_pos = jnp.concatenate([pos_id, extra_pos])
        col_label = jnp.concatenate([row_label, jnp.full((shared.shape[0],), EXTRA, jnp.int32)])
    if mask is not None:
        mask = jnp.asarray(mask)
        want = (b, world * cols.shape[0])
        if mask.shape != want or mask.dtype != jnp.bool_:
            what = "[B, B + M]" if axis_name is None else "[B, W (B + M)]"
            raise ValueError(
                f"{fn}: mask must be bool of shape {what} = {list(want)}, got {mask.dtype} {list(mask.shape)}"
            )
    meta = Meta(pos_id, row_label, col_pos, col_label, mask)
    spec = (Lse("neg"),)
    (lse_row,), col = pair_stats(
        q, cols, scale, 0.0, meta, spec, spec if symmetric else (), block_size,
        axis_name=axis_name, gather=gather, bound=_bound(normalize),
    )
    if per_query is not None:
        x_neg = scale * jnp.einsum(
            "bd,bkd->bk", q, per_query.astype(q.dtype), preferred_element_type=acc_dtype(q)
        )
        keep = jnp.ones(x_neg.shape, bool) if negatives_mask is None else negatives_mask
        lse_row = jnp.logaddexp(lse_row, masked_lse(x_neg, keep, 1))
    pos = scale * (_rowdot(q, k) - margin)
    per_anchor = _log1p_exp_gap(lse_row, pos)
    if symmetric:
        per_anchor = 0.5 * (per_anchor + _log1p_exp_gap(col[0][:b], pos))
    return C.reduce(per_anchor, reduction, axis_name)


@LOSSES.register("additive_margin",
                 inputs="pair", streams=True, cross_device=True, scale="temperature", extra_negatives=True, labels=True)
def additive_margin(query, key, *, margin=0.3, temperature=0.05, symmetric: bool = False, labels=None,
                    negatives=None, negatives_mask=None, mask=None, normalize: bool = True, reduction: str = "mean",
                    block_size: int | None = None, axis_name=None, gather: str = "all_gather"):
    r"""InfoNCE with an additive margin on the positive (AM-Softmax for dual encoders).

    ``loss_i = -(s_ii - m)/t + log( exp((s_ii - m)/t) + sum_{j != i} exp(s_ij / t) )``;
    the other arguments as in :func:`infonce`, which computes it (``symmetric=True`` gives
    the bidirectional loss of Yang et al. 2019; ``axis_name`` the negatives of every device).

    References:
      Wang et al., *Additive Margin Softmax for Face Verification*, 2018.
      Yang et al., *Improving Multilingual Sentence Embedding using Bi-directional Dual
      Encoder with Additive Margin Softmax*, 2019.
    """
    return infonce(query, key, margin=margin, temperature=temperature, symmetric=symmetric, labels=labels,
                   negatives=negatives, negatives_mask=negatives_mask, mask=mask, normalize=normalize,
                   reduction=reduction, block_size=block_size, axis_name=axis_name, gather=gather)


# ----------------------------------------------------------------------------- two-view (SimCLR) family


@LOSSES.register("ntxent", inputs="pair", streams=True, cross_device=True, scale="temperature", extra_negatives=True)
def ntxent(
    z1,
    z2,
    *,
    temperature=0.07,
    negatives=None,
    negatives_mask=None,
    mask=None,
    normalize: bool = True,
    reduction: str = "mean",
    block_size: int | None = None,
    axis_name=None,
    gather: str = "all_gather",
):
    r"""NT-Xent (SimCLR): each of the ``2B`` views is an anchor with 1 positive and ``2B - 2`` negatives.

    With ``z = [z1; z2]`` (``[2B, D]``) and ``p(i)`` the other view of ``i``::

        loss_i = -x_{i,p(i)} + log sum_{j != i} exp(x_ij),        i = 1..2B.

    With shared extra ``negatives [M, D]`` (a memory bank of earlier embeddings: cross-batch
    memory, Wang et al. 2020) every anchor's sum also runs over ``x_im = <z_i, n_m> / t``;
    ``negatives_mask [M]`` keeps only the slots flagged True, and ``mask [2B, 2B + M]`` drops
    individual pairs from anchor ``i``'s sum (e.g. all but ``n`` random in-batch negatives,
    :func:`jaxneg.samplers.subsample`, or a bank slot holding ``i``'s own earlier embedding).
    The mask's entries on ``i`` itself and on its positive ``p(i)`` are ignored. A row with
    no negatives has loss 0.

    Args:
      z1, z2: ``[B, D]`` two views of the same ``B`` samples.
      temperature: ``t > 0``.
      negatives: optional ``[M, D]`` extra negatives shared by every anchor.
      negatives_mask: optional bool ``[M]``: True marks a real negative, False padding.
      mask: optional bool ``[2B, 2B + M]`` (columns: view 1, view 2, then the negatives);
        True drops the pair. With ``axis_name``: ``[2B, W (2B + M)]``, every device's
        (views, negatives) block in device order.
      reduction: ``"none"`` returns ``[2B]`` (view 1 anchors first).
      block_size: stream over blocks of the ``2B`` candidates.
      axis_name: inside ``jax.shard_map``, the mesh axis the batch is sharded over; the
        inputs are this device's rows and the loss is that of the global batch (see the
        module docstring).
      gather: ``"all_gather"`` or ``"ring"``: how the keys reach every device.

    References:
      Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations*, 2020.
    """
    fn = "ntxent"
    scale = _temperature(fn, temperature)
    C.reduction(fn, reduction)
    block_size = C.block_size(fn, block_size)
    z, b, world, meta = _two_views(fn, z1, z2, normalize, axis_name=axis_name, gather=gather)
    cols, meta = _with_extra(fn, z, meta, negatives, negatives_mask, mask, world, normalize)
    (lse_neg,), _ = pair_stats(
        z, cols, scale, 0.0, meta, (Lse("neg"),), (), block_size, axis_name=axis_name, gather=gather,
        bound=_bound(normalize),
    )
    pos = _positive_logits(z, b, scale)
    return C.reduce(_log1p_exp_gap(lse_neg, pos), reduction, axis_name)


@LOSSES.register("decoupled", inputs="pair", streams=True, scale="temperature")
def decoupled(
    z1,
    z2,
    *,
    temperature=0.1,
    weight_sigma=None,
    normalize: bool = True,
    reduction: str = "mean",
    block_size: int | None = None,
):
    r"""Decoupled contrastive loss (DCL; DCLW with ``weight_sigma``): the positive leaves the denominator.

    For each of the ``2B`` anchors::

        loss_i = -w_i * x_{i,p(i)} + log sum_{j: sample(j) != sample(i)} exp(x_ij)

    with ``w_i = 1`` (DCL) or, for DCLW, ``w_i = 2 - B * softmax_b(s_{b,p(b)} / sigma)_i``
    (the softmax over the batch of positive cosines; gradients flow through ``w`` as in
    the official code). The official code sums the two directions; this is their mean
    over the ``2B`` anchors (half of it).

    Args:
      z1, z2: ``[B, D]``.
      temperature: ``t > 0``.
      weight_sigma: ``sigma > 0`` for the von Mises-Fisher weighting (DCLW), else ``None``.

    References:
      Yeh et al., *Decoupled Contrastive Learning*, ECCV 2022.
    """
    fn = "decoupled"
    scale = _temperature(fn, temperature)
    C.reduction(fn, reduction)
    block_size = C.block_size(fn, block_size)
    z, b, _, meta = _two_views(fn, z1, z2, normalize)
    (lse_neg,), _ = pair_stats(z, z, scale, 0.0, meta, (Lse("neg"),), (), block_size, bound=_bound(normalize))
    pos = _positive_logits(z, b, scale)
    if weight_sigma is not None:
        C.scalar(fn, "weight_sigma", weight_sigma, low=0.0)
        cos = _rowdot(z[:b], z[b:])
        w = 2.0 - b * jax.nn.softmax(cos / weight_sigma)
        pos = pos * jnp.concatenate([w, w])
    return C.reduce(lse_neg - pos, reduction)


def _debiased_estimator(pos, log_neg, n, scale, tau_plus):
    r"""``-p + log(e^p + Ng)`` with ``Ng = max((e^{a} - tau+ N e^p)/(1 - tau+), N e^{-1/t})`` in logs.

    ``a = log_neg`` is the log of the (re-weighted) negative sum. The difference is taken
    as ``a + log(-expm1(b - a))`` with ``b = log(tau+ N) + p``, which never overflows; where
    ``b >= a`` the first branch is empty and the clamp decides.
    """
    log_n = jnp.log(jnp.asarray(n, pos.dtype))
    floor = log_n - scale  # log(N e^{-1/t})
    if C.is_concrete(tau_plus) and float(tau_plus) == 0:
        log_ng = jnp.maximum(log_neg, floor)
    else:
        gap = jnp.log(jnp.asarray(tau_plus, pos.dtype)) + log_n + pos - log_neg
        ok = gap < 0
        diff = log_neg + jnp.log(-jnp.expm1(jnp.where(ok, gap, -1.0))) - jnp.log1p(-tau_plus)
        log_ng = jnp.maximum(jnp.where(ok, diff, -jnp.inf), floor)
    return _log1p_exp_gap(log_ng, pos)


def _check_tau_plus(fn, tau_plus):
    C.scalar(fn, "tau_plus", tau_plus, low=0.0, high=1.0, low_inclusive=True, high_inclusive=False)
    return float(tau_plus) if C.is_concrete(tau_plus) else tau_plus  # traced: e.g. one member of a vectorised sweep


@LOSSES.register("debiased", inputs="pair", streams=True, cross_device=True, scale="temperature")
def debiased(
    z1,
    z2,
    *,
    temperature=0.5,
    tau_plus=0.1,
    normalize: bool = True,
    reduction: str = "mean",
    block_size: int | None = None,
    axis_name=None,
    gather: str = "all_gather",
):
    r"""Debiased contrastive loss (Chuang et al. 2020), SimCLR setting.

    For each of the ``2B`` anchors, with ``N = 2B - 2`` negatives and ``p = x_{i,p(i)}``::

        Ng_i   = max( (sum_{j neg} e^{x_ij} - tau+ N e^{p}) / (1 - tau+),  N e^{-1/t} )
        loss_i = -log( e^{p} / (e^{p} + Ng_i) )

    computed in the log domain (the official code overflows for small ``t``). The clamp
    ``N e^{-1/t}`` is the smallest value of the sum for unit-norm embeddings.
    ``tau_plus = 0`` recovers NT-Xent.

    Args:
      z1, z2: ``[B, D]``, ``B >= 2``.
      temperature: ``t > 0``.
      tau_plus: class prior ``0 <= tau+ < 1``.
      axis_name: inside ``jax.shard_map``, the mesh axis the batch is sharded over; the
        inputs are this device's rows and the loss is that of the global batch (see the
        module docstring).
      gather: ``"all_gather"`` or ``"ring"``: how the keys reach every device.
        With ``axis_name``, ``N = 2 W B - 2`` counts the negatives of the global batch.

    References:
      Chuang et al., *Debiased Contrastive Learning*, NeurIPS 2020.
    """
    fn = "debiased"
    scale = _temperature(fn, temperature)
    tau_plus = _check_tau_plus(fn, tau_plus)
    C.reduction(fn, reduction)
    block_size = C.block_size(fn, block_size)
    z, b, world, meta = _two_views(fn, z1, z2, normalize, 2, axis_name, gather)
    (lse_neg,), _ = pair_stats(
        z, z, scale, 0.0, meta, (Lse("neg"),), (), block_size, axis_name=axis_name, gather=gather,
        bound=_bound(normalize),
    )
    pos = _positive_logits(z, b, scale)
    n = 2 * world * b - 2
    return C.reduce(_debiased_estimator(pos, lse_neg, n, scale, tau_plus), reduction, axis_name)


@LOSSES.register("hard_negative", inputs="pair", streams=True, cross_device=True, scale="temperature",
                 static=("beta",))  # beta is a coefficient of the streamed statistics' structure
def hard_negative(
    z1,
    z2,
    *,
    temperature=0.5,
    tau_plus=0.1,
    beta=1.0,
    normalize: bool = True,
    reduction: str = "mean",
    block_size: int | None = None,
    axis_name=None,
    gather: str = "all_gather",
):
    r"""Hard-negative contrastive loss (HCL; Robinson et al. 2021), SimCLR setting.

    Negatives are importance-weighted by ``w_ij = e^{beta x_ij}`` (``x = s/t`` as in the
    official code, i.e. ``neg ** beta``), normalised to mean 1 over the ``N = 2B - 2``
    negatives; the debiased estimator and clamp of :func:`debiased` are then applied to::

        log R_i = LSE_j((1 + beta) x_ij) - LSE_j(beta x_ij) + log N

    (``R_i = sum_j w_ij e^{x_ij} / mean_j w_ij``). ``beta = 0`` recovers :func:`debiased`.
    ``axis_name``/``gather`` as in :func:`debiased`.

    References:
      Robinson et al., *Contrastive Learning with Hard Negative Samples*, ICLR 2021.
    """
    fn = "hard_negative"
    scale = _temperature(fn, temperature)
    tau_plus = _check_tau_plus(fn, tau_plus)
    C.scalar(fn, "beta", beta, low=0.0, low_inclusive=True)
    beta = float(beta)
    C.reduction(fn, reduction)
    block_size = C.block_size(fn, block_size)
    z, b, world, meta = _two_views(fn, z1, z2, normalize, 2, axis_name, gather)
    n = 2 * world * b - 2
    (lse_hard, lse_w), _ = pair_stats(
        z, z, scale, 0.0, meta, (Lse("neg", 1.0 + beta), Lse("neg", beta)), (), block_size,
        axis_name=axis_name, gather=gather, bound=_bound(normalize),
    )
    log_reweighted = lse_hard - lse_w + jnp.log(jnp.asarray(n, lse_w.dtype))
    pos = _positive_logits(z, b, scale)
    return C.reduce(_debiased_estimator(pos, log_reweighted, n, scale, tau_plus), reduction, axis_name)


# ----------------------------------------------------------------------------- SupCon


def _identity(x, same):
    del same
    return x


def _label_counts(labels, among=None):
    """``#{j : among[j] == labels[i]}`` for every ``i`` (``among`` defaults to ``labels``), O(n log n)."""
    srt = jnp.sort(labels if among is None else among)
    return jnp.searchsorted(srt, labels, side="right") - jnp.searchsorted(srt, labels, side="left")


@LOSSES.register("supcon", inputs="views", streams=True, cross_device=True, scale="temperature", labels=True)
def supcon(
    features,
    labels=None,
    *,
    temperature=0.07,
    base_temperature=0.07,
    normalize: bool = True,
    reduction: str = "mean",
    block_size: int | None = None,
    axis_name=None,
    gather: str = "all_gather",
):
    r"""Supervised contrastive loss (SupCon, "all" anchors, the L_out variant).

    All ``N * V`` views are anchors and candidates. For anchor ``a`` with positives
    ``P(a)`` (same label, not ``a``; with ``labels=None`` the other views of ``a``'s sample)::

        loss_a = -(t / t_base) * (1 / |P(a)|) * sum_{p in P(a)} ( x_ap - LSE_{j != a} x_aj )

    and ``loss_a = 0`` when ``P(a)`` is empty (such anchors still count in the mean, as
    in the official code). Computed as ``sum_p x_ap - |P(a)| * LSE`` from two row
    statistics, so it streams.

    Args:
      features: ``[N, V, D]``, ``V`` views per sample.
      labels: optional ``[N]`` int labels.
      temperature, base_temperature: ``> 0``.
      reduction: ``"none"`` returns ``[V * N]`` in view-major order (all first views first).
      axis_name: inside ``jax.shard_map``, the mesh axis the batch is sharded over; the
        inputs are this device's rows and the loss is that of the global batch (see the
        module docstring).
      gather: ``"all_gather"`` or ``"ring"``: how the keys reach every device.

    References:
      Khosla et al., *Supervised Contrastive Learning*, NeurIPS 2020.
    """
    fn = "supcon"
    features = C.as_float_array(fn, "features", features, 3, "[N, V, D]")
    n, v, d = features.shape
    scale = _temperature(fn, temperature)
    C.scalar(fn, "base_temperature", base_temperature, low=0.0)
    C.reduction(fn, reduction)
    block_size = C.block_size(fn, block_size)
    off, world = _shard(fn, axis_name, gather, n)
    sample = off + jnp.arange(n, dtype=jnp.int32)
    labels = sample if labels is None else C.as_label_array(fn, "labels", labels, n, "N")
    z = _maybe_normalize(jnp.swapaxes(features, 0, 1).reshape(v * n, d), normalize)
    lab = jnp.tile(labels, v)
    pos_id = (jnp.arange(v, dtype=jnp.int32)[:, None] * (world * n) + sample[None, :]).reshape(-1)
    (lse, pos_sum), _ = pair_stats(
        z, z, scale, 0.0, Meta(pos_id, lab, pos_id, lab), (Lse("not_self"), Sum("pos", _identity)), (), block_size,
        axis_name=axis_name, gather=gather, bound=_bound(normalize),
    )
    every = lab if axis_name is None else lax.all_gather(lab, axis_name, tiled=True)
    count = (_label_counts(lab, every) - 1).astype(lse.dtype)
    has = count > 0
    # Where the anchor has no positive, lse may be -inf (a lone view): keep it out of the math.
    mean_log_prob = jnp.where(has, (pos_sum - count * jnp.where(has, lse, 0.0)) / jnp.maximum(count, 1.0), 0.0)
    per_anchor = -(temperature / base_temperature) * mean_log_prob
    return C.reduce(per_anchor, reduction, axis_name)


# ----------------------------------------------------------------------------- SigLIP


def _siglip_term(x, same):
    return jax.nn.log_sigmoid(jnp.where(same, x, -x))


@LOSSES.register("siglip", inputs="pair", streams=True, cross_device=True, scale="logit_scale", labels=True)
def siglip(
    query,
    key,
    *,
    logit_scale=10.0,
    logit_bias=-10.0,
    labels=None,
    normalize: bool = True,
    reduction: str = "mean",
    block_size: int | None = None,
    axis_name=None,
    gather: str = "all_gather",
):
    r"""Sigmoid pairwise loss (SigLIP).

    ::

        loss = -(1/B) sum_i sum_j log sigmoid( z_ij (scale * s_ij + bias) )

    with ``z_ij = +1`` on the diagonal (with ``labels``: where the labels match) and
    ``-1`` elsewhere. ``logit_scale`` is the multiplier itself (big_vision learns its
    log, initialised at ``log 10``) and may be traced; so may ``logit_bias``.

    Args:
      query, key: ``[B, D]``.
      labels: optional ``[B]``: pairs with equal labels are positives.
      reduction: ``"none"`` returns the per-query row sums ``[B]``.
      axis_name: inside ``jax.shard_map``, the mesh axis the batch is sharded over; the
        inputs are this device's rows and the loss is that of the global batch (see the
        module docstring).
      gather: ``"all_gather"`` or ``"ring"``: how the keys reach every device.
        ``gather="ring"`` is big_vision's chunked sigmoid loss, exchanging key shards.

    References:
      Zhai et al., *Sigmoid Loss for Language Image Pre-Training*, ICCV 2023.
    """
    fn = "siglip"
    query, key = _pair_inputs(fn, query, key)
    b = query.shape[0]
    C.scalar(fn, "logit_scale", logit_scale, low=0.0)
    C.scalar(fn, "logit_bias", logit_bias)
    C.reduction(fn, reduction)
    block_size = C.block_size(fn, block_size)
    off, _ = _shard(fn, axis_name, gather, b)
    pos_id = off + jnp.arange(b, dtype=jnp.int32)
    lab = pos_id if labels is None else C.as_label_array(fn, "labels", labels, b)
    q, k = _maybe_normalize(query, normalize), _maybe_normalize(key, normalize)
    (row,), _ = pair_stats(
        q, k, logit_scale, logit_bias, Meta(pos_id, lab, pos_id, lab), (Sum("all", _siglip_term),), (), block_size,
        axis_name=axis_name, gather=gather,
    )
    return C.reduce(-row, reduction, axis_name)


# ----------------------------------------------------------------------------- soft targets


@LOSSES.register("soft_target", inputs="teacher", scale="temperature")
def soft_target(
    query,
    key,
    targets,
    *,
    temperature=0.07,
    target_temperature=None,
    symmetric: bool = False,
    normalize: bool = True,
    reduction: str = "mean",
):
    r"""Contrastive cross-entropy against a soft target distribution (CWCL, UniME-V2 style).

    ::

        P_ij    = targets_ij / sum_j targets_ij                      (target_temperature=None)
                  softmax_j(targets_ij / target_temperature)          (otherwise; targets are scores)
        loss_i  = -sum_j P_ij log softmax_j(s_ij / t)

    With ``targets = I`` this is :func:`infonce`. CWCL uses ``targets_ij = (1 + c_ij) / 2``
    with ``c`` the intra-modal cosine of a frozen encoder; UniME-V2 uses judge scores with
    a target temperature. ``symmetric=True`` averages with the key->query direction
    (targets transposed).

    Args:
      query, key: ``[B, D]``.
      targets: ``[B, B]`` non-negative weights (each row with positive sum), or scores.

    References:
      Srinivasa et al., *CWCL: Cross-Modal Transfer with Continuously Weighted Contrastive Loss*, NeurIPS 2023.
      Gu et al., *UniME-V2: MLLM-as-a-Judge for Universal Multimodal Embedding Learning*, 2025.
    """
    fn = "soft_target"
    query, key = _pair_inputs(fn, query, key)
    b = query.shape[0]
    scale = _temperature(fn, temperature)
    C.reduction(fn, reduction)
    targets = C.as_float_array(fn, "targets", targets, 2, f"[B, B] = [{b}, {b}]")
    if targets.shape != (b, b):
        raise ValueError(f"{fn}: targets must have shape [B, B] = [{b}, {b}], got {list(targets.shape)}")
    if target_temperature is not None:
        C.scalar(fn, "target_temperature", target_temperature, low=0.0)
    elif C.is_concrete(targets) and bool(jnp.any(targets < 0)):
        raise ValueError(f"{fn}: targets must be non-negative when target_temperature is None")
    q, k = _maybe_normalize(query, normalize), _maybe_normalize(key, normalize)
    acc = acc_dtype(q, k, targets)
    x = scale * (q.astype(acc) @ k.astype(acc).T)
    t = targets.astype(acc)

    def direction(logits, tgt):
        if target_temperature is None:
            p = tgt / jnp.sum(tgt, axis=1, keepdims=True)
        else:
            p = jax.nn.softmax(tgt / target_temperature, axis=1)
        return -jnp.sum(p * jax.nn.log_softmax(logits, axis=1), axis=1)

    per_anchor = direction(x, t)
    if symmetric:
        per_anchor = 0.5 * (per_anchor + direction(x.T, t.T))
    return C.reduce(per_anchor, reduction)

