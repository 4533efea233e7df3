"""No NaN/inf at temperature 0.01 with bf16 inputs, with all-masked rows, or with duplicates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import losses as L
from jaxneg import metrics as M
from tests.losses.cases import rand, with_duplicates


def _finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize(
    "fn",
    [
        lambda q, k, **o: L.infonce(q, k, temperature=0.01, symmetric=True, **o),
        lambda q, k, **o: L.infonce(q, k, temperature=0.01, labels=jnp.arange(q.shape[0]) % 3, margin=0.2, **o),
        lambda q, k, **o: L.ntxent(q, k, temperature=0.01, **o),
        lambda q, k, **o: L.decoupled(q, k, temperature=0.01, weight_sigma=0.5, **o),
        lambda q, k, **o: L.debiased(q, k, temperature=0.01, tau_plus=0.1, **o),
        lambda q, k, **o: L.hard_negative(q, k, temperature=0.01, beta=2.0, **o),
        lambda q, k, **o: L.supcon(jnp.stack([q, k], 1), jnp.arange(q.shape[0]) % 3, temperature=0.01, **o),
        lambda q, k, **o: L.siglip(q, k, logit_scale=100.0, logit_bias=-10.0, **o),
    ],
    ids=["infonce", "infonce_labels_margin", "ntxent", "dclw", "debiased", "hcl", "supcon", "siglip"],
)
@pytest.mark.parametrize("block", [None, 3])
def test_bf16_cold_temperature_duplicates_are_finite(fn, block):
    rng = np.random.default_rng(0)
    q = jnp.asarray(with_duplicates(rand(rng, 8, 16)), jnp.bfloat16)
    k = jnp.asarray(with_duplicates(rand(rng, 8, 16)), jnp.bfloat16)
    k = k.at[2].set(q[2])  # a query identical to a key
    val, grads = jax.value_and_grad(lambda q, k: fn(q, k, block_size=block), argnums=(0, 1))(q, k)
    assert val.dtype == jnp.float32
    assert grads[0].dtype == jnp.bfloat16
    assert _finite((val, grads))
    # bf16 matmul with fp32 accumulation stays close to the fp32 loss (relative to its size).
    ref = fn(q.astype(jnp.float32), k.astype(jnp.float32), block_size=block)
    assert abs(float(val) - float(ref)) <= 0.05 * (1.0 + abs(float(ref)))


@pytest.mark.parametrize("block", [None, 2])
@pytest.mark.slow
def test_all_masked_rows_give_zero_loss_and_finite_grads(block):
    rng = np.random.default_rng(1)
    q, k = jnp.asarray(rand(rng, 5, 4)), jnp.asarray(rand(rng, 5, 4))
    same = jnp.zeros(5, jnp.int32)  # every key shares the query's label: no negatives at all
    f = lambda q, k: L.infonce(q, k, labels=same, symmetric=True, temperature=0.01, block_size=block, reduction="none")
    val = f(q, k)
    np.testing.assert_array_equal(val, np.zeros(5))
    assert _finite(jax.grad(lambda q, k: f(q, k).sum(), argnums=(0, 1))(q, k))
    # SupCon anchors without a positive contribute exactly 0 (and count in the mean).
    feats = jnp.asarray(rand(rng, 4, 1, 3))
    g = lambda f_: L.supcon(f_, jnp.arange(4), temperature=0.01, block_size=block, reduction="none")
    np.testing.assert_array_equal(g(feats), np.zeros(4))
    assert _finite(jax.grad(lambda f_: g(f_).sum())(feats))
    # A single sample with a single view: nothing to contrast, still finite.
    one = jnp.asarray(rand(rng, 1, 1, 3))
    assert _finite(jax.value_and_grad(lambda f_: L.supcon(f_, block_size=block))(one))


def test_zero_vectors_have_finite_gradients():
    z = jnp.zeros((4, 3))
    for fn in (lambda a: L.infonce(a, a), lambda a: L.ntxent(a, a), lambda a: L.siglip(a, a)):
        assert _finite(jax.value_and_grad(fn)(z))


def test_metrics_finite_on_duplicates():
    x = jnp.asarray(with_duplicates(rand(np.random.default_rng(2), 6, 3)))
    assert _finite(jax.value_and_grad(lambda x: M.uniformity(x, block_size=4))(x))
    assert _finite(jax.value_and_grad(lambda x: M.alignment(x, x))(x))


@pytest.mark.parametrize("mining", ["batch_hard", "all", "semihard"])
def test_triplet_and_ms_finite_on_duplicates_and_degenerate_labels(mining):
    x = jnp.asarray(with_duplicates(rand(np.random.default_rng(3), 6, 3)))
    for labels in (jnp.zeros(6, jnp.int32), jnp.arange(6), jnp.array([0, 0, 1, 1, 2, 2])):
        assert _finite(jax.value_and_grad(lambda x: L.triplet(x, labels, mining=mining))(x))
        assert _finite(jax.value_and_grad(lambda x: L.multi_similarity(x, labels))(x))
