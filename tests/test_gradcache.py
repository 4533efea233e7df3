"""Gradient caching equals the uncached gradient (same per-chunk keys), alone and under shard_map."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxneg import gradcache
from jaxneg import losses as L
from jaxneg import parallel

RTOL = 1e-5


class Tower(nn.Module):
    dropout: float = 0.3

    @nn.compact
    def __call__(self, x, train=True):
        x = nn.gelu(nn.Dense(32)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(16)(nn.LayerNorm()(x))


MODEL = Tower()
PARAMS = MODEL.init(jax.random.key(0), jnp.ones((1, 6)), train=False)


def encode(params, inputs, key):
    """Two towers sharing weights, plus K hard negatives per example ``[c, K, 6]``."""
    q, d, neg = inputs
    rngs = lambda i: {"dropout": jax.random.fold_in(key, i)}
    n = MODEL.apply(params, neg.reshape(-1, neg.shape[-1]), rngs=rngs(2)).reshape(neg.shape[:2] + (-1,))
    return MODEL.apply(params, q, rngs=rngs(0)), MODEL.apply(params, d, rngs=rngs(1)), n


def loss_fn(reps, **kw):
    q, d, n = reps
    return L.infonce(q, d, negatives=n, temperature=0.05, **kw)


def batch(rng, b, k=3):
    return tuple(jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((b, 6), (b, 6), (b, k, 6)))


def assert_tree_close(got, want):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert np.linalg.norm(g - w) <= RTOL * np.linalg.norm(w)
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=RTOL * np.max(np.abs(w)))


@pytest.mark.parametrize("chunk", [1, 8])
def test_cached_gradient_equals_the_reference_with_dropout(chunk):
    x, rng = batch(np.random.default_rng(0), 24), jax.random.key(1)
    got_v, (got_g, got_lg) = jax.jit(gradcache.value_and_grad(encode, loss_fn, chunk_size=chunk))(PARAMS, x, rng)
    assert got_lg is None  # no loss parameters: the structure is the same, their gradient None
    ref = lambda p: loss_fn(gradcache.chunked_encode(encode, p, x, rng, chunk_size=chunk))
    want_v, want_g = jax.value_and_grad(ref)(PARAMS)
    np.testing.assert_allclose(got_v, want_v, rtol=RTOL)
    assert_tree_close(got_g, want_g)
    # the keys matter: a different rng gives a different gradient
    other = gradcache.value_and_grad(encode, loss_fn, chunk_size=chunk)(PARAMS, x, jax.random.key(2))[1][0]
    assert not np.allclose(jax.tree.leaves(other)[0], jax.tree.leaves(got_g)[0])


def test_without_randomness_chunking_does_not_change_the_gradient():
    det = lambda p, x, key: tuple(MODEL.apply(p, a.reshape(-1, 6), train=False).reshape(a.shape[:-1] + (16,)) for a in x)
    x = batch(np.random.default_rng(1), 16)
    got = gradcache.value_and_grad(det, loss_fn, chunk_size=4)(PARAMS, x)
    want = jax.value_and_grad(lambda p: loss_fn(det(p, x, None)))(PARAMS)
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL)
    assert_tree_close(got[1][0], want[1])


def test_has_aux_passes_the_aux_through():
    x = batch(np.random.default_rng(2), 8)
    aux_loss = lambda reps: (loss_fn(reps), {"norm": jnp.mean(jnp.linalg.norm(reps[0], axis=-1))})
    (v, aux), (g, _) = gradcache.value_and_grad(encode, aux_loss, chunk_size=4, has_aux=True)(PARAMS, x,
                                                                                             jax.random.key(0))
    assert set(aux) == {"norm"} and np.isfinite(float(v))
    assert jax.tree.structure(g) == jax.tree.structure(PARAMS)


@pytest.mark.parametrize("gather", ["all_gather", "ring"])
@pytest.mark.slow
def test_under_shard_map_with_global_negatives(gather):
    w, b, chunk = 8, 4, 2
    mesh = parallel.data_mesh("d", jax.devices()[:w])
    x, rng = batch(np.random.default_rng(3), w * b), jax.random.key(5)

    def local(params, x, rng):
        key = jax.random.fold_in(rng, jax.lax.axis_index("d"))  # per-device dropout masks
        step = gradcache.value_and_grad(
            encode, lambda r: loss_fn(r, axis_name="d", gather=gather), chunk_size=chunk, axis_name="d")
        return step(params, x, key)

    f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("d"), P()), out_specs=(P(), (P(), P())))
    got_v, (got_g, _) = jax.jit(f)(PARAMS, x, rng)

    def reference(params):  # one device: the same per-device, per-chunk keys, global batch
        reps = [gradcache.chunked_encode(encode, params, jax.tree.map(lambda a: a[i * b:(i + 1) * b], x),
                                         jax.random.fold_in(rng, i), chunk_size=chunk) for i in range(w)]
        return loss_fn(jax.tree.map(lambda *r: jnp.concatenate(r), *reps))

    want_v, want_g = jax.value_and_grad(reference)(PARAMS)
    np.testing.assert_allclose(got_v, want_v, rtol=RTOL)
    assert_tree_close(got_g, want_g)


def test_errors():
    x = batch(np.random.default_rng(4), 6)
    with pytest.raises(ValueError, match="chunk_size=4 must divide the batch size 6"):
        gradcache.value_and_grad(encode, loss_fn, chunk_size=4)(PARAMS, x, jax.random.key(0))
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1, got 0"):
        gradcache.value_and_grad(encode, loss_fn, chunk_size=0)
    with pytest.raises(ValueError, match="same leading batch axis"):
        gradcache.chunked_encode(encode, PARAMS, (x[0], x[1][:3], x[2]), chunk_size=3)


@pytest.mark.parametrize("devices", [1, 4])
def test_loss_params_get_their_gradient(devices):
    """A learnable temperature in loss_params: its gradient and the encoder's match the uncached ones."""
    b, chunk = 4, 2
    x, rng = batch(np.random.default_rng(4), devices * b), jax.random.key(6)
    lp = {"log_scale": jnp.asarray(2.5)}
    temp_loss = lambda reps, p, **kw: L.infonce(reps[0], reps[1], negatives=reps[2],
                                               temperature=jnp.exp(-p["log_scale"]), **kw)
    if devices == 1:
        f = jax.jit(gradcache.value_and_grad(encode, temp_loss, chunk_size=chunk))
        got_v, (got_g, got_lg) = f(PARAMS, x, rng, lp)
        keys = [rng]
    else:
        mesh = parallel.data_mesh("d", jax.devices()[:devices])

        def local(params, x, rng, lp):
            key = jax.random.fold_in(rng, jax.lax.axis_index("d"))
            step = gradcache.value_and_grad(encode, lambda r, p: temp_loss(r, p, axis_name="d"),
                                            chunk_size=chunk, axis_name="d")
            return step(params, x, key, lp)

        f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("d"), P(), P()), out_specs=(P(), (P(), P())))
        got_v, (got_g, got_lg) = jax.jit(f)(PARAMS, x, rng, lp)
        keys = [jax.random.fold_in(rng, i) for i in range(devices)]

    def reference(params, lp):
        reps = [gradcache.chunked_encode(encode, params, jax.tree.map(lambda a: a[i * b:(i + 1) * b], x), keys[i],
                                         chunk_size=chunk) for i in range(devices)]
        return temp_loss(jax.tree.map(lambda *r: jnp.concatenate(r), *reps), lp)

    want_v, (want_g, want_lg) = jax.value_and_grad(reference, argnums=(0, 1))(PARAMS, lp)
    np.testing.assert_allclose(got_v, want_v, rtol=RTOL)
    assert_tree_close(got_g, want_g)
    np.testing.assert_allclose(got_lg["log_scale"], want_lg["log_scale"], rtol=1e-4)
    assert abs(float(want_lg["log_scale"])) > 1e-3
