"""Clear ValueErrors that name the bad argument and the expected shape or range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import losses as L
from jaxneg import metrics as M
from jaxneg.registry import LOSSES, Registry

q = np.zeros((4, 3), np.float32)
lab = np.arange(4, dtype=np.int32)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: L.infonce(q, q[:3]), r"key must have the shape of query \[4, 3\], got \[3, 3\]"),
        (lambda: L.infonce(q[0], q[0]), r"query must have shape \[B, D\], got shape \[3\]"),
        (lambda: L.infonce(q, q, mask=np.zeros((4, 5), bool)), r"mask must be bool of shape \[B, B \+ M\] = \[4, 4\]"),
        (lambda: L.infonce(q, q, temperature=0.0), r"temperature must be > 0.0, got 0.0"),
        (lambda: L.infonce(q, q, temperature=-1), r"temperature must be > 0.0"),
        (lambda: L.infonce(q, q, temperature=float("nan")), r"temperature"),
        (lambda: L.infonce(q, q, labels=lab[:3]), r"labels must have shape \[B\] = \[4\], got shape \[3\]"),
        (lambda: L.infonce(q, q, labels=lab.astype(np.float32)), r"labels must be integers"),
        (lambda: L.infonce(q, q, negatives=np.zeros((5, 2))), r"negatives must have shape \[M, D\] or \[B, K, D\]"),
        (lambda: L.infonce(q, q, reduction="avg"), r"reduction must be one of"),
        (lambda: L.infonce(q[:0], q[:0]), r"infonce: query is empty: expected shape \[B, D\]"),
        (lambda: L.ntxent(q[:0], q[:0]), r"ntxent: z1 is empty"),
        (lambda: L.supcon(q[:0, None]), r"supcon: features is empty"),
        (lambda: L.triplet(q[:0], lab[:0]), r"triplet: embeddings is empty"),
        (lambda: L.sampled_softmax(q[:0], q[:0], q, temperature=1.0), r"sampled_softmax: query is empty"),
        (lambda: L.margin_mse(q[:0, 0], q[:0, 0], q[:0, 0], q[:0, 0]), r"margin_mse: pos_scores is empty"),
        (lambda: L.infonce(q, q, negatives=np.zeros((4, 2, 3), np.float32), negatives_mask=np.ones((4, 3), bool)),
         r"negatives_mask must be bool of shape \[B, K\] = \[4, 2\]"),
        (lambda: L.infonce(q, q, negatives=q, negatives_mask=np.ones(4)), r"negatives_mask must be bool of shape \[M\]"),
        (lambda: L.infonce(q, q, negatives_mask=np.ones(4, bool)), r"negatives_mask needs negatives"),
        (lambda: L.infonce(q, q, block_size=0), r"block_size must be a positive int"),
        (lambda: L.infonce(q, q, margin=-0.1), r"margin must be >= 0.0"),
        (lambda: L.infonce(np.zeros((4, 3), np.int32), q), r"query must be floating point"),
        (lambda: L.ntxent(q, q[:, :2]), r"z2 must have the shape of z1"),
        (lambda: L.debiased(q, q, tau_plus=1.0), r"tau_plus must be >= 0.0 and < 1.0"),
        (lambda: L.debiased(q[:1], q[:1]), r"at least 2 samples"),
        (lambda: L.hard_negative(q, q, beta=-1.0), r"beta must be >= 0.0"),
        (lambda: L.decoupled(q, q, weight_sigma=0.0), r"weight_sigma must be > 0.0"),
        (lambda: L.supcon(q), r"features must have shape \[N, V, D\]"),
        (lambda: L.supcon(q[:, None], lab[:2]), r"labels must have shape \[N\] = \[4\]"),
        (lambda: L.supcon(q[:, None], base_temperature=0), r"base_temperature must be > 0.0"),
        (lambda: L.siglip(q, q, logit_scale=-1.0), r"logit_scale must be > 0.0"),
        (lambda: L.soft_target(q, q, np.zeros((4, 3), np.float32)), r"targets must have shape \[B, B\] = \[4, 4\]"),
        (lambda: L.soft_target(q, q, -np.ones((4, 4), np.float32)), r"targets must be non-negative"),
        (lambda: L.triplet(q, lab, mining="hardest"), r"mining must be one of"),
        (lambda: L.triplet(q, lab, distance="l1"), r"distance must be one of"),
        (lambda: L.triplet(q, lab[:2]), r"labels must have shape \[B\] = \[4\]"),
        (lambda: L.multi_similarity(q, lab, alpha=0.0), r"alpha must be > 0.0"),
        (lambda: L.sampled_softmax(q, q, np.zeros((4, 2, 2)), temperature=1.0), r"negatives must have shape"),
        (lambda: L.sampled_softmax(q, q, np.zeros((4, 2, 3)), temperature=1.0, log_q=np.zeros(3)),
         r"log_q must have shape \[4, 2\] or \[2\]"),
        (lambda: L.sampled_softmax(q, q, np.zeros((2, 3)), temperature=1.0, positive_ids=lab),
         r"both positive_ids and negative_ids"),
        (lambda: L.margin_mse(lab.astype(np.float32), np.zeros(3), lab, lab), r"neg_scores must have shape \[B\]"),
        (lambda: M.uniformity(q[:1]), r"at least 2 rows"),
        (lambda: M.alignment(q, q[:2]), r"y must have the shape of x"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_shape_errors_raise_under_jit_too():
    with pytest.raises(ValueError, match="key must have the shape of query"):
        jax.jit(L.infonce)(q, q[:2])


def test_traced_temperature_is_accepted():
    f = jax.jit(lambda t: L.infonce(q + 1.0, q + 2.0, temperature=t))
    assert np.isfinite(f(jnp.float32(0.1)))


def test_registry_lists_valid_names_on_typo():
    assert L.get("infonce") is L.infonce
    with pytest.raises(ValueError, match=r"unknown loss 'info_nce'; valid names: .*infonce.*siglip"):
        L.get("info_nce")
    expected = {"infonce", "additive_margin", "ntxent", "decoupled", "debiased", "hard_negative", "supcon",
                "siglip", "soft_target", "triplet", "multi_similarity", "sampled_softmax", "bpr", "margin_mse"}
    assert set(LOSSES.names()) == expected
    assert set(L.STREAMING) <= expected


def test_registry_refuses_a_second_function_under_one_name():
    r = Registry("thing")
    r.register("a")(len)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a")(print)
