"""Gradient checks in float64 (``jax.test_util.check_grads``: reverse mode vs finite differences).

Run for both the dense path and the streamed custom VJP, so the hand-written backward
pass is checked against numerical derivatives, not just against autodiff.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxneg import losses as L
from jaxneg import metrics as M
from tests.losses.cases import STREAMING_CASES, labels_with_repeats


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _f64(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float64)


@pytest.mark.parametrize("name", sorted(STREAMING_CASES))
@pytest.mark.parametrize("block", [3])  # the streamed custom VJP; the dense path's gradient equals it
def test_streaming_losses_check_grads(name, block):  # (test_streaming_equals_dense_value_and_grad)
    fn, _, x = STREAMING_CASES[name](np.random.default_rng(11), 5, 4)
    x = [jnp.asarray(a, jnp.float64) for a in x]
    check_grads(lambda *a: fn(*a, block_size=block), x, order=1, modes=("rev",), atol=1e-6, rtol=1e-6, eps=1e-5)


def test_temperature_and_siglip_scalars_check_grads():
    rng = np.random.default_rng(12)
    q, k = _f64(rng, 6, 4), _f64(rng, 6, 4)
    for block in (None, 4):
        check_grads(lambda t: L.infonce(q, k, temperature=t, symmetric=True, block_size=block), (0.2,),
                    order=1, modes=("rev",), eps=1e-6)
        check_grads(lambda s, b: L.siglip(q, k, logit_scale=s, logit_bias=b, block_size=block), (3.0, -1.0),
                    order=1, modes=("rev",), eps=1e-6)


@pytest.mark.parametrize("mining", ["batch_hard", "all", "semihard"])
def test_triplet_check_grads(mining):
    rng = np.random.default_rng(13)
    x, labels = _f64(rng, 8, 3), labels_with_repeats(rng, 8)
    check_grads(lambda x: L.triplet(x, labels, margin=0.5, mining=mining), (x,), order=1, modes=("rev",), eps=1e-6)


def test_dense_only_losses_check_grads():
    rng = np.random.default_rng(14)
    b, d = 6, 4
    x, labels = _f64(rng, b, d), labels_with_repeats(rng, b)
    q, p, negs = _f64(rng, b, d), _f64(rng, b, d), _f64(rng, b, 3, d)
    targets = jnp.asarray(rng.uniform(size=(b, b)))
    kw = dict(order=1, modes=("rev",), eps=1e-6)
    check_grads(lambda x: L.multi_similarity(x, labels, beta=10.0, epsilon=0.5), (x,), **kw)
    check_grads(lambda q, p, n: L.sampled_softmax(q, p, n, temperature=0.3, log_q=jnp.zeros(3)), (q, p, negs), **kw)
    check_grads(lambda q, p, n: L.bpr(q, p, n), (q, p, negs), **kw)
    check_grads(lambda q, p: L.soft_target(q, p, targets, symmetric=True, temperature=0.5), (q, p), **kw)
    check_grads(lambda a: L.margin_mse(a[:, 0], a[:, 1], p[:, 0], p[:, 1]), (q,), **kw)
    teacher_grad = jax.grad(lambda b: L.margin_mse(q[:, 0], q[:, 1], b[:, 0], b[:, 1]))(p)
    np.testing.assert_array_equal(teacher_grad, np.zeros_like(p))  # the teacher is a fixed target
    check_grads(lambda x: M.uniformity(x, block_size=4), (x,), **kw)
    check_grads(lambda x, y: M.alignment(x, y), (x, q), **kw)
