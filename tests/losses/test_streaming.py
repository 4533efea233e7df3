"""Streaming (block_size=...) equals the dense path in value and in every gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxneg import losses as L
from jaxneg import metrics as M
from jaxneg.losses._pairwise import Lse, Meta, Sum, pair_stats
from tests.losses.cases import STREAMING_CASES, rand

RTOL, ATOL = 1e-5, 1e-6


@pytest.mark.parametrize("name", sorted(STREAMING_CASES))
@pytest.mark.parametrize("b,block", [(5, 2), (7, 64)])  # a ragged last block; one block wider than the batch
# (more shapes, blocks and row tiles: test_pair_stats_property)
def test_streaming_equals_dense_value_and_grad(name, b, block):
    fn, _, x = STREAMING_CASES[name](np.random.default_rng(b * 31 + block), b, 6)
    argnums = tuple(range(len(x)))
    # jitted: one compile per case instead of one per eager scan (each eager call re-traces it)
    dense = jax.jit(jax.value_and_grad(lambda *a: fn(*a), argnums=argnums))(*x)
    streamed = jax.jit(jax.value_and_grad(lambda *a: fn(*a, block_size=block), argnums=argnums))(*x)
    np.testing.assert_allclose(streamed[0], dense[0], rtol=RTOL, atol=ATOL)
    for gs, gd in zip(streamed[1], dense[1]):
        np.testing.assert_allclose(gs, gd, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradient_wrt_learnable_temperature(symmetric):
    rng = np.random.default_rng(1)
    q, k = jnp.asarray(rand(rng, 9, 5)), jnp.asarray(rand(rng, 9, 5))
    f = lambda lt, block: L.infonce(q, k, temperature=jnp.exp(lt), symmetric=symmetric, block_size=block)
    lt = jnp.log(0.1)
    gd = jax.grad(f)(lt, None)
    gs = jax.grad(f)(lt, 4)
    np.testing.assert_allclose(gs, gd, rtol=RTOL)
    eps = 1e-3  # and against a central difference
    fd = (f(lt + eps, None) - f(lt - eps, None)) / (2 * eps)
    np.testing.assert_allclose(gd, fd, rtol=2e-3)


def test_siglip_gradient_wrt_scale_and_bias():
    rng = np.random.default_rng(2)
    q, k = jnp.asarray(rand(rng, 10, 4)), jnp.asarray(rand(rng, 10, 4))
    f = lambda s, bias, block: L.siglip(q, k, logit_scale=s, logit_bias=bias, block_size=block)
    gd = jax.grad(f, argnums=(0, 1))(7.0, -3.0, None)
    gs = jax.grad(f, argnums=(0, 1))(7.0, -3.0, 3)
    np.testing.assert_allclose(gs, gd, rtol=RTOL)


def test_uniformity_streams():
    x = jnp.asarray(rand(np.random.default_rng(3), 21, 6))
    gd = jax.value_and_grad(M.uniformity)(x)
    gs = jax.value_and_grad(lambda x: M.uniformity(x, block_size=5))(x)
    np.testing.assert_allclose(gs[0], gd[0], rtol=RTOL)
    np.testing.assert_allclose(gs[1], gd[1], rtol=RTOL, atol=ATOL)


def test_streaming_under_jit_and_block_larger_than_batch():
    rng = np.random.default_rng(4)
    q, k = jnp.asarray(rand(rng, 6, 4)), jnp.asarray(rand(rng, 6, 4))
    f = jax.jit(lambda q, k: L.infonce(q, k, symmetric=True, block_size=1000))
    np.testing.assert_allclose(f(q, k), L.infonce(q, k, symmetric=True), rtol=RTOL)


def _ident(x, same):
    return x


def _sq(x, same):
    return jnp.where(same, x * x, jnp.sin(x))


@given(
    b=st.integers(1, 12),
    extra=st.integers(0, 7),
    d=st.integers(1, 6),
    block=st.integers(1, 20),
    row_block=st.integers(1, 13),
    n_labels=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=max(15, settings().max_examples // 2))  # each example compiles its own shapes
@pytest.mark.slow
def test_pair_stats_property(b, extra, d, block, row_block, n_labels, seed):
    """Random metadata, specs on rows and columns, any key block and row tile (with padding
    on both sides): streamed == dense, value and gradient."""
    rng = np.random.default_rng(seed)
    m = b + extra
    q, k = jnp.asarray(rand(rng, b, d)), jnp.asarray(rand(rng, m, d))
    row_label = jnp.asarray(rng.integers(0, n_labels, b), jnp.int32)
    pos = jnp.arange(b, dtype=jnp.int32)
    meta = Meta(pos, row_label, jnp.concatenate([pos, -jnp.ones(extra, jnp.int32)]),
                jnp.concatenate([row_label, -jnp.ones(extra, jnp.int32)]))
    rows = (Lse("neg"), Lse("not_self", 0.5), Sum("pos", _ident), Sum("all", _sq))
    cols = (Lse("all", 2.0), Sum("neg", _sq))
    w = [jnp.asarray(rng.standard_normal(n), jnp.float32) for n in (b, b, b, b, m, m)]

    def f(q, k, scale, bias, block_size):
        r, c = pair_stats(q, k, scale, bias, meta, rows, cols, block_size, row_block)
        # -inf (empty sets) is a legitimate value; weight only the finite entries.
        return sum(jnp.sum(jnp.where(jnp.isfinite(s), s, 0.0) * wi) for s, wi in zip(r + c, w))

    vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)), static_argnums=4)  # one compile per example
    vd, gd = vg(q, k, 1.7, -0.2, None)
    vs, gs = vg(q, k, 1.7, -0.2, block)
    np.testing.assert_allclose(vs, vd, rtol=1e-5, atol=1e-4)
    for a, b_ in zip(gs, gd):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scale,bias", [(1.7, -0.2), (14.0, 0.0), (39.0, 0.5)])
def test_fixed_shift_equals_the_running_maximum(scale, bias):
    """With a bound on |<q, k>| and a concrete scale, the streamed path subtracts a fixed shift (one
    exponential per tile for the row and column statistics); value and gradients equal the path with a
    running maximum, including an all-masked row, padding columns and a row whose logits all sit at the
    bottom of the range (exp(-2 * scale * bound) must not underflow)."""
    from jaxneg.losses import _pairwise as PW

    rng = np.random.default_rng(7)
    b, m, d = 9, 13, 5
    q = rng.standard_normal((b, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = rng.standard_normal((m, d)).astype(np.float32)
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k[:, :] = np.where(np.arange(m)[:, None] < 4, -q[0], k)  # row 0's first columns at <q, k> = -1
    q, k = jnp.asarray(q), jnp.asarray(k)
    pos = jnp.arange(b, dtype=jnp.int32)
    labels = jnp.asarray([0, 1, 1, 2, 2, 2, 3, 4, 5], jnp.int32)
    col_pos = jnp.concatenate([pos, jnp.asarray([PW.EXTRA, PW.EXTRA, PW.PAD, PW.EXTRA], jnp.int32)])
    col_label = jnp.concatenate([labels, jnp.full((4,), -1, jnp.int32)])
    meta = Meta(pos, labels, col_pos, col_label)
    rows = (Lse("neg"), Lse("pos"), Lse("not_self", 0.5), Sum("all", _sq))
    cols = (Lse("neg"), Lse("all", 0.5))
    w = [jnp.asarray(rng.standard_normal(n), jnp.float32) for n in (b, b, b, b, m, m)]
    shifted = PW._with_shifts(rows + cols, scale, bias, 1.0)
    assert all(s.shift is not None for s in shifted if isinstance(s, Lse))

    def f(q, k, bound):
        r, c = pair_stats(q, k, scale, bias, meta, rows, cols, 4, 3, bound=bound)
        return sum(jnp.sum(jnp.where(jnp.isfinite(s), s, 0.0) * wi) for s, wi in zip(r + c, w)), r + c

    (v1, s1), g1 = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(q, k, None)
    (v2, s2), g2 = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True), static_argnums=2)(q, k, 1.0)
    for a, b_ in zip(s2, s1):
        np.testing.assert_allclose(a, b_, rtol=2e-6, atol=2e-6)
    assert np.isneginf(s1[1][0])  # row 0 has no positive: an empty set stays -inf
    np.testing.assert_allclose(v2, v1, rtol=2e-6)
    for a, b_ in zip(g2, g1):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)


def test_the_fixed_shift_is_used_only_where_it_is_exact():
    from jaxneg.losses import _pairwise as PW

    spec = (Lse("neg"), Lse("neg", 2.0), Sum("all", _sq))
    out = PW._with_shifts(spec, 14.0, 0.0, 1.0)
    assert out[0].shift == 14.0 and out[1].shift == 28.0 and out[2] is spec[2]
    assert PW._with_shifts(spec, 100.0, 0.0, 1.0)[0].shift is None  # t = 0.01: span 200 > 80, running max
    assert PW._with_shifts(spec, 14.0, 0.0, None) == spec  # no bound (unnormalised inputs)
    assert PW._with_shifts(spec, jnp.float32(14.0), 0.0, 1.0)[0].shift == 14.0
    traced = jax.jit(lambda s: jnp.asarray(PW._with_shifts(spec, s, 0.0, 1.0)[0].shift is None))(14.0)
    assert bool(traced)  # a traced (learned) scale keeps the running maximum
    # the losses pass a concrete temperature through as a NumPy constant, also under jit
    assert not isinstance(L.contrastive._temperature("t", 0.07), jax.Array)
