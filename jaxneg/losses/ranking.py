"""Losses over explicit candidates: sampled softmax with log-Q correction, BPR, Margin-MSE."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxneg import _checks as C
from jaxneg.losses._pairwise import acc_dtype
from jaxneg.losses.contrastive import _log1p_exp_gap, _maybe_normalize, _rowdot, _temperature
from jaxneg.registry import LOSSES


def _negative_scores(fn, q, negatives, normalize):
    """``<q_i, n>`` for shared ``[M, D]`` (-> ``[B, M]``) or per-query ``[B, K, D]`` (-> ``[B, K]``)."""
    b, d = q.shape
    negatives = jnp.asarray(negatives)
    if negatives.ndim == 2 and negatives.shape[1] == d:
        n = _maybe_normalize(C.as_float_array(fn, "negatives", negatives, 2, "[M, D]"), normalize)
        return jnp.einsum("bd,md->bm", q, n.astype(q.dtype), preferred_element_type=acc_dtype(q))
    if negatives.ndim == 3 and negatives.shape[0] == b and negatives.shape[2] == d:
        n = _maybe_normalize(C.as_float_array(fn, "negatives", negatives, 3, "[B, K, D]"), normalize)
        return jnp.einsum("bd,bkd->bk", q, n.astype(q.dtype), preferred_element_type=acc_dtype(q))
    raise ValueError(
        f"{fn}: negatives must have shape [M, D] or [B, K, D] with B={b}, D={d}, got shape {list(negatives.shape)}"
    )


def _query_positive(fn, query, positive, normalize):
    query = C.as_float_array(fn, "query", query, 2, "[B, D]")
    positive = C.as_float_array(fn, "positive", positive, 2, "[B, D]")
    C.same_shape(fn, "positive", positive, "query", query)
    return _maybe_normalize(query, normalize), _maybe_normalize(positive, normalize)


def _broadcast_rows(fn, name, x, shape, dtype):
    """Accept ``[B, K]`` or a per-candidate ``[K]`` vector for a ``[B, K]`` score matrix."""
    x = jnp.asarray(x, dtype)
    if x.shape == shape:
        return x
    if x.shape == shape[1:]:
        return jnp.broadcast_to(x, shape)
    raise ValueError(f"{fn}: {name} must have shape {list(shape)} or {list(shape[1:])}, got {list(x.shape)}")


@LOSSES.register("sampled_softmax", inputs="sampled", scale="temperature", extra_negatives=True)
def sampled_softmax(
    query,
    positive,
    negatives,
    *,
    temperature,
    log_q=None,
    positive_log_q=None,
    positive_ids=None,
    negative_ids=None,
    normalize: bool = True,
    reduction: str = "mean",
):
    r"""Softmax over ``[positive, negatives]`` with the log-Q (sampling-bias) correction.

    ::

        o_i^+  = s(q_i, p_i) / t - log Q(p_i)
        o_ik   = s(q_i, n_k) / t - log Q(n_k)
        loss_i = -o_i^+ + log( e^{o_i^+} + sum_k e^{o_ik} )

    where ``Q`` is the probability with which the sampler drew the item (for the
    positive, usually its in-batch sampling probability; omitted terms are 0). Negatives
    that are the query's own positive (``negative_ids == positive_ids[i]``, "accidental
    hits") are dropped.

    Args:
      query, positive: ``[B, D]``.
      negatives: ``[B, K, D]`` per query or ``[M, D]`` shared.
      temperature: ``t > 0``.
      log_q: log sampling probabilities of the negatives, ``[B, K]`` / ``[B, M]`` or ``[K]`` / ``[M]``.
      positive_log_q: ``[B]``.
      positive_ids: ``[B]`` item ids; negative_ids: ids of the negatives (shape as ``log_q``).

    References:
      Bengio & Senecal, *Adaptive Importance Sampling to Accelerate Training of a Neural
      Probabilistic Language Model*, 2008. Yi et al., *Sampling-Bias-Corrected Neural
      Modeling for Large Corpus Item Recommendations*, RecSys 2019.
    """
    fn = "sampled_softmax"
    scale = _temperature(fn, temperature)
    C.reduction(fn, reduction)
    q, p = _query_positive(fn, query, positive, normalize)
    b = q.shape[0]
    o_pos = scale * _rowdot(q, p)
    o_neg = scale * _negative_scores(fn, q, negatives, normalize)
    if positive_log_q is not None:
        o_pos = o_pos - _broadcast_rows(fn, "positive_log_q", positive_log_q, (b,), o_pos.dtype)
    if log_q is not None:
        o_neg = o_neg - _broadcast_rows(fn, "log_q", log_q, o_neg.shape, o_neg.dtype)
    keep = jnp.ones(o_neg.shape, bool)
    if (positive_ids is None) != (negative_ids is None):
        raise ValueError(f"{fn}: give both positive_ids and negative_ids, or neither")
    if positive_ids is not None:
        pid = C.as_label_array(fn, "positive_ids", positive_ids, b)
        nid = jnp.asarray(negative_ids)
        if nid.shape not in (o_neg.shape, o_neg.shape[1:]):
            raise ValueError(f"{fn}: negative_ids must have shape {list(o_neg.shape)} or {list(o_neg.shape[1:])}")
        keep = jnp.broadcast_to(nid, o_neg.shape) != pid[:, None]
    lse = jax.nn.logsumexp(jnp.where(keep, o_neg, -jnp.inf), axis=1)
    return C.reduce(_log1p_exp_gap(lse, o_pos), reduction)


@LOSSES.register("bpr", inputs="sampled", scale="temperature", extra_negatives=True)
def bpr(query, positive, negatives, *, temperature=1.0, normalize: bool = True, reduction: str = "mean"):
    r"""Bayesian personalised ranking: ``loss_i = mean_k -log sigmoid((s(q_i, p_i) - s(q_i, n_ik)) / t)``.

    ``s`` is the dot product of the (normalised, unless ``normalize=False`` as for
    classical matrix factorisation) embeddings.

    Args:
      query, positive: ``[B, D]``; negatives: ``[B, D]`` (one each), ``[B, K, D]`` or ``[M, D]`` shared.

    References:
      Rendle et al., *BPR: Bayesian Personalized Ranking from Implicit Feedback*, UAI 2009.
    """
    fn = "bpr"
    scale = _temperature(fn, temperature)
    C.reduction(fn, reduction)
    q, p = _query_positive(fn, query, positive, normalize)
    negatives = jnp.asarray(negatives)
    if negatives.shape == q.shape:  # one negative per query
        negatives = negatives[:, None, :]
    s_neg = _negative_scores(fn, q, negatives, normalize)
    diff = scale * (_rowdot(q, p)[:, None] - s_neg)
    return C.reduce(jnp.mean(jax.nn.softplus(-diff), axis=1), reduction)


@LOSSES.register("margin_mse", inputs="teacher")
def margin_mse(pos_scores, neg_scores, teacher_pos, teacher_neg, *, reduction: str = "mean"):
    r"""Margin-MSE distillation: ``loss_i = mean_k ((s_i^+ - s_ik^-) - (T_i^+ - T_ik^-))^2``.

    The student learns the teacher's score *margin*, not its scores; teacher scores
    receive no gradient.

    Args:
      pos_scores: ``[B]`` student scores of the positives; neg_scores: ``[B]`` or ``[B, K]``.
      teacher_pos, teacher_neg: same shapes as the student's.

    References:
      Hofstätter et al., *Improving Efficient Neural Ranking Models with Cross-Architecture
      Knowledge Distillation*, 2020.
    """
    fn = "margin_mse"
    C.reduction(fn, reduction)
    sp = C.as_float_array(fn, "pos_scores", pos_scores, 1, "[B]")
    b = sp.shape[0]
    sn = jnp.asarray(neg_scores)
    if sn.shape not in ((b,), (b, sn.shape[-1] if sn.ndim == 2 else -1)):
        raise ValueError(f"{fn}: neg_scores must have shape [B] or [B, K] with B={b}, got {list(sn.shape)}")
    tp = jnp.asarray(teacher_pos)
    tn = jnp.asarray(teacher_neg)
    C.same_shape(fn, "teacher_pos", tp, "pos_scores", sp)
    C.same_shape(fn, "teacher_neg", tn, "neg_scores", sn)
    sn2, tn2 = (sn[:, None], tn[:, None]) if sn.ndim == 1 else (sn, tn)
    acc = acc_dtype(sp, sn2)
    student = sp.astype(acc)[:, None] - sn2.astype(acc)
    teacher = jax.lax.stop_gradient(tp.astype(acc)[:, None] - tn2.astype(acc))
    return C.reduce(jnp.mean(jnp.square(student - teacher), axis=1), reduction)
