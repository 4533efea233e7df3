"""Sharded losses (all-gather and ring) equal the single-device loss on the global batch.

Inside ``jax.shard_map`` over 8 CPU devices each device passes its own rows; the value and
the gradients with respect to every device's inputs must equal those of the loss of the
concatenated batch on one device, to 1e-5 relative in fp32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxneg import losses as L
from jaxneg import parallel

W, B = 8, 3  # devices, rows per device
RTOL = 1e-5


def mesh():
    assert len(jax.devices()) >= W, "tests/conftest.py asks for 8 CPU devices"
    return parallel.data_mesh("d", jax.devices()[:W])


def rand(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def uneven_labels(rng, n):
    """Classes of sizes 1 to ~6 scattered over the devices (and a class local to one device)."""
    lab = rng.integers(0, n // 3, n)
    lab[:B] = 999  # all of device 0's rows share a class no other device has
    return jnp.asarray(lab, jnp.int32)


def case(name, rng):
    """(single(*x), local(*x, axis_name, gather), global inputs x, number of differentiable inputs)."""
    n = W * B
    q, k = rand(rng, n, 5), rand(rng, n, 5)
    if name == "infonce":
        return (lambda q, k: L.infonce(q, k, temperature=0.1),
                lambda q, k, **a: L.infonce(q, k, temperature=0.1, **a), (q, k), 2)
    if name == "infonce_clip_labels_bank_mask":
        lab, bank = uneven_labels(rng, n), rand(rng, 2 * W, 5)  # 2 bank rows per device
        m = bank.shape[0] // W
        mask = (rng.random((n, n + W * m)) < 0.2) & ~np.eye(n, n + W * m, dtype=bool)
        # the sharded mask's columns: each device's (keys, bank rows), in device order
        cols = np.concatenate([np.r_[w * B : (w + 1) * B, n + w * m : n + (w + 1) * m] for w in range(W)])
        kw = dict(temperature=0.07, symmetric=True)
        return (lambda q, k, bank: L.infonce(q, k, labels=lab, negatives=bank, mask=jnp.asarray(mask), **kw),
                lambda q, k, bank, lab, mask, **a: L.infonce(q, k, labels=lab, negatives=bank, mask=mask, **kw, **a),
                (q, k, bank, lab, jnp.asarray(mask[:, cols])), 3)
    if name == "infonce_per_query_negatives":
        neg = rand(rng, n, 4, 5)
        return (lambda q, k, neg: L.infonce(q, k, negatives=neg, temperature=0.2),
                lambda q, k, neg, **a: L.infonce(q, k, negatives=neg, temperature=0.2, **a), (q, k, neg), 3)
    if name == "additive_margin_symmetric":
        return (lambda q, k: L.additive_margin(q, k, margin=0.2, temperature=0.1, symmetric=True),
                lambda q, k, **a: L.additive_margin(q, k, margin=0.2, temperature=0.1, symmetric=True, **a),
                (q, k), 2)
    if name == "ntxent":
        return (lambda a, b: L.ntxent(a, b, temperature=0.2),
                lambda a, b, **x: L.ntxent(a, b, temperature=0.2, **x), (q, k), 2)
    if name == "debiased":
        return (lambda a, b: L.debiased(a, b, temperature=0.3, tau_plus=0.1),
                lambda a, b, **x: L.debiased(a, b, temperature=0.3, tau_plus=0.1, **x), (q, k), 2)
    if name == "hard_negative":
        return (lambda a, b: L.hard_negative(a, b, temperature=0.3, tau_plus=0.1, beta=2.0),
                lambda a, b, **x: L.hard_negative(a, b, temperature=0.3, tau_plus=0.1, beta=2.0, **x), (q, k), 2)
    if name == "supcon_labels":
        f, lab = rand(rng, n, 2, 5), uneven_labels(rng, n)
        return (lambda f: L.supcon(f, lab, temperature=0.1),
                lambda f, lab, **a: L.supcon(f, lab, temperature=0.1, **a), (f, lab), 1)
    if name == "siglip_labels_learnable":
        lab = uneven_labels(rng, n)
        return (lambda q, k, s, bias: L.siglip(q, k, logit_scale=s, logit_bias=bias, labels=lab),
                lambda q, k, s, bias, lab, **a: L.siglip(q, k, logit_scale=s, logit_bias=bias, labels=lab, **a),
                (q, k, jnp.float32(8.0), jnp.float32(-4.0), lab), 4)
    if name == "infonce_learnable_temperature":
        return (lambda q, k, lt: L.infonce(q, k, temperature=jnp.exp(lt), symmetric=True),
                lambda q, k, lt, **a: L.infonce(q, k, temperature=jnp.exp(lt), symmetric=True, **a),
                (q, k, jnp.float32(np.log(0.1))), 3)
    raise KeyError(name)


CASES = ["infonce", "additive_margin_symmetric", "infonce_clip_labels_bank_mask", "infonce_per_query_negatives", "ntxent", "debiased",
         "hard_negative", "supcon_labels", "siglip_labels_learnable", "infonce_learnable_temperature"]


def sharded(local, x, n_diff, gather, block):
    """``shard_map`` of ``local`` over the leading axis of every non-scalar input."""
    specs = tuple(P() if jnp.ndim(a) == 0 else P("d") for a in x)
    body = lambda *a: local(*a, axis_name="d", gather=gather, block_size=block)
    f = jax.shard_map(body, mesh=mesh(), in_specs=specs, out_specs=P())
    return jax.jit(jax.value_and_grad(f, argnums=tuple(range(n_diff))))(*x)


def assert_close(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.max(np.abs(want)) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale)
    assert np.linalg.norm(got - want) <= RTOL * max(np.linalg.norm(want), 1e-30)


@pytest.mark.parametrize("gather,block", [("all_gather", None), ("ring", 2)])
@pytest.mark.parametrize("name", CASES)
def test_sharded_loss_equals_single_device_loss(name, gather, block):
    single, local, x, n_diff = case(name, np.random.default_rng(len(name)))
    want = jax.value_and_grad(single, argnums=tuple(range(n_diff)))(*x[:n_diff])
    got = sharded(local, x, n_diff, gather, block)
    assert_close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        assert_close(g, w)


@pytest.mark.parametrize("gather,block", [("all_gather", 2), ("ring", None)])
def test_other_block_settings(gather, block):
    single, local, x, n_diff = case("infonce_clip_labels_bank_mask", np.random.default_rng(0))
    want = jax.value_and_grad(single, argnums=tuple(range(n_diff)))(*x[:n_diff])
    got = sharded(local, x, n_diff, gather, block)
    assert_close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        assert_close(g, w)


def test_reduction_none_returns_this_devices_anchors():
    rng = np.random.default_rng(1)
    q, k = rand(rng, W * B, 4), rand(rng, W * B, 4)
    want = L.infonce(q, k, symmetric=True, reduction="none")
    f = jax.shard_map(lambda q, k: L.infonce(q, k, symmetric=True, reduction="none", axis_name="d", gather="ring"),
                      mesh=mesh(), in_specs=(P("d"), P("d")), out_specs=P("d"))
    assert_close(f(q, k), want)


def _eqns(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in its equations' parameters."""
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def test_no_zero_size_concatenate():
    """JAX 0.11.2 segfaults (CPU) on ``concatenate`` of a device-varying array with a zero-size one
    inside an un-jitted ``shard_map`` (the test above crashed the process): the losses never emit one."""
    q = jnp.ones((W * B, 4))
    seen = 0
    for fn in (lambda q, k: L.infonce(q, k, symmetric=True, reduction="none", axis_name="d", gather="ring"),
               lambda q, k: L.infonce(q, k, axis_name="d", block_size=2, reduction="none"),
               lambda q, k: L.ntxent(q, k, axis_name="d", reduction="none"),
               lambda q, k: L.siglip(q, k, axis_name="d", reduction="none")):
        f = jax.shard_map(fn, mesh=mesh(), in_specs=(P("d"), P("d")), out_specs=P("d"))
        cats = [e for e in _eqns(jax.make_jaxpr(f)(q, q).jaxpr) if e.primitive.name == "concatenate"]
        seen += len(cats)
        for e in cats:
            assert all(v.aval.size > 0 for v in e.invars), e
    assert seen  # the walk reaches inside shard_map and the custom VJPs (ntxent concatenates its views)


def test_ring_never_gathers_the_keys():
    rng = np.random.default_rng(2)
    q, k = rand(rng, W * B, 4), rand(rng, W * B, 4)
    f = jax.shard_map(lambda q, k: L.infonce(q, k, axis_name="d", gather="ring", block_size=B),
                      mesh=mesh(), in_specs=(P("d"), P("d")), out_specs=P())
    text = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(q, k).as_text()
    assert "all-gather" not in text and "all_gather" not in text
    assert "collective_permute" in text or "collective-permute" in text


def test_errors_name_the_axis_and_gather():
    q = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="axis_name='d' is not a bound mesh axis"):
        L.infonce(q, q, axis_name="d")
    f = jax.shard_map(lambda q: L.ntxent(q, q, axis_name="d", gather="tree"), mesh=mesh(),
                      in_specs=P("d"), out_specs=P())
    with pytest.raises(ValueError, match="gather must be one of"):
        f(jnp.ones((W * B, 3)))
