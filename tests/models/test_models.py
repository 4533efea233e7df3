"""Encoders: output shapes, no batch coupling (exact under gradcache / sharding), the logit scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import models

CASES = [("mlp", {}, (6, 40), jnp.float32), ("cnn1d", {"channels": (8, 16)}, (6, 40), jnp.float32),
         ("resnet", {"stage_sizes": (1, 1), "width": 8}, (6, 8, 8, 3), jnp.float32),
         ("bag_of_tokens", {"vocab_size": 50, "dim": 8}, (6, 5), jnp.int32),
         ("id_embedding", {"num_items": 30, "dim": 8}, (6,), jnp.int32)]


@pytest.mark.parametrize("name,kwargs,shape,dtype", CASES, ids=[c[0] for c in CASES])
def test_each_example_is_encoded_independently(name, kwargs, shape, dtype):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(1, 30, shape) if dtype == jnp.int32 else rng.standard_normal(shape), dtype)
    model = models.build(name, models.ProjectionHead(12, (16,)), **kwargs)
    params = jax.jit(model.init)(jax.random.key(0), x)  # (jitted: one compilation instead of one per op)
    apply = jax.jit(model.apply)
    h, z = apply(params, x)
    assert z.shape == (6, 12) and h.ndim == 2 and h.shape[0] == 6
    h1, z1 = apply(params, x[:1])
    np.testing.assert_allclose(z1, z[:1], rtol=1e-5, atol=1e-6)  # no batch statistics


def test_bag_of_tokens_ignores_padding():
    m = models.BagOfTokens(vocab_size=20, dim=4, features=(8,))
    t = jnp.asarray([[3, 5, 0, 0]])
    p = m.init(jax.random.key(0), t)
    np.testing.assert_allclose(m.apply(p, t), m.apply(p, jnp.asarray([[3, 5]])), rtol=1e-6)


def _mean_embedding_reference(table, tokens, g):
    """float64 NumPy: the masked mean of the rows, and the gradient of ``sum(out * g)`` for the table."""
    table, tokens, g = np.asarray(table, np.float64), np.asarray(tokens), np.asarray(g, np.float64)
    flat = tokens.reshape(-1, tokens.shape[-1])
    w = (flat > 0) / np.maximum((flat > 0).sum(-1, keepdims=True), 1)
    out = np.einsum("nt,ntd->nd", w, table[flat])
    grad = np.zeros_like(table)
    np.add.at(grad, flat, w[..., None] * g.reshape(len(flat), 1, -1))
    return out.reshape(tokens.shape[:-1] + (-1,)), grad


def test_mean_embedding_and_its_gradient_equal_a_numpy_reference_alone_vmapped_and_sharded():
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.normal(size=(4, 11, 6)), jnp.float32)           # 4 models, V = 11, D = 6
    tokens = rng.integers(0, 11, (4, 8, 3, 5))                                # [models, 8, 3, T = 5]
    tokens[:, :, :, 3:] = 0                                                   # padding
    tokens[:, 0, 0] = 0                                                       # an all-pad row: 0
    tokens[:, 1, 0] = 7                                                       # a repeated token
    tokens = jnp.asarray(tokens, jnp.int32)
    g = jnp.asarray(rng.normal(size=(4, 8, 3, 6)), jnp.float32)
    value_and_grad = lambda t, k, g: jax.value_and_grad(lambda t: jnp.sum(models.mean_embedding(t, k) * g))(t)
    out = jax.jit(jax.vmap(models.mean_embedding))(table, tokens)
    _, grads = jax.jit(jax.vmap(value_and_grad))(table, tokens, g)
    for i in range(4):
        ref_out, ref_grad = _mean_embedding_reference(table[i], tokens[i], g[i])
        np.testing.assert_allclose(out[i], ref_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(models.mean_embedding(table[i], tokens[i]), ref_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grads[i], ref_grad, rtol=1e-5, atol=1e-6)
    assert not np.any(out[:, 0, 0])
    # rows on 2 devices, the table replicated: its gradient sums the devices' (as jnp.take's does)
    from jax.sharding import PartitionSpec as P

    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("d",))
    sharded = jax.jit(jax.shard_map(lambda t, k, g: value_and_grad(t, k, g)[1], mesh=mesh,
                                    in_specs=(P(), P("d"), P("d")), out_specs=P()))
    np.testing.assert_allclose(sharded(table[0], tokens[0], g[0]), grads[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"tokens \[..., T\] int"):
        models.mean_embedding(table[0], tokens[0].astype(jnp.float32))


def test_logit_scale_is_clipped_and_errors_name_the_model():
    p = models.logit_params(0.07, bias=-10.0)
    np.testing.assert_allclose(models.logit_scale(p), 1 / 0.07, rtol=1e-6)
    assert float(models.logit_scale({"log_scale": jnp.asarray(9.0)})) == pytest.approx(100.0)
    g = jax.grad(lambda s: models.logit_scale({"log_scale": s}))(jnp.asarray(9.0))
    assert float(g) == 0.0  # clipped: no gradient pushes it further
    with pytest.raises(ValueError, match="valid names: bag_of_tokens, cnn1d"):
        models.build("cnn2d")
    with pytest.raises(ValueError, match="temperature"):
        models.logit_params(0.0)


@pytest.mark.parametrize("length", [7, 10])
def test_max_pool2_equals_flax_max_pool(length):
    import flax.linen as nn

    x = jnp.asarray(np.random.default_rng(1).standard_normal((3, length, 4)), jnp.float32)
    ref = lambda x: nn.max_pool(x, (2,), (2,), padding="SAME")  # noqa: E731
    np.testing.assert_array_equal(models.encoders.max_pool2(x), ref(x))
    w = jnp.arange(3 * ((length + 1) // 2) * 4, dtype=jnp.float32).reshape(3, -1, 4)
    grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * w))(x)  # noqa: E731
    np.testing.assert_array_equal(grad(models.encoders.max_pool2), grad(ref))
    with pytest.raises(ValueError):
        models.encoders.max_pool2(x[0, 0])
