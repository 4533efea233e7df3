"""Invariances: row permutation, input scale (normalised losses), temperature/scale trade-off."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import losses as L
from tests.losses.cases import STREAMING_CASES, rand


@pytest.mark.parametrize("name", sorted(STREAMING_CASES))
def test_permuting_the_batch_permutes_per_anchor_losses(name):
    if "labels" in name or name in ("supcon", "infonce_margin", "infonce_pair_mask", "ntxent_bank_mask"):
        pytest.skip("labels / the pair mask are bound inside the case")
    rng = np.random.default_rng(0)
    fn, _, x = STREAMING_CASES[name](rng, 7, 5)
    perm = rng.permutation(7)
    # every input is per-anchor except a shared negative bank
    x_perm = [a[perm] if a.shape[0] == 7 else a for a in x]
    base = np.asarray(fn(*x, reduction="none"))
    got = np.asarray(fn(*x_perm, reduction="none"))
    b = 7
    if base.shape[0] == b:
        want = base[perm]
    else:  # [V * B] in view-major order
        views = base.shape[0] // b
        want = base.reshape(views, b)[:, perm].reshape(-1)
    if name.startswith("decoupled_weighted"):
        np.testing.assert_allclose(np.sort(got), np.sort(want), rtol=1e-5)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(STREAMING_CASES))
def test_normalised_losses_ignore_input_scale(name):
    rng = np.random.default_rng(1)
    fn, _, x = STREAMING_CASES[name](rng, 6, 4)
    scaled = [a * rng.uniform(0.5, 3.0, size=a.shape[:-1] + (1,)).astype(np.float32) for a in x]
    np.testing.assert_allclose(fn(*scaled), fn(*x), rtol=1e-5, atol=1e-6)


def test_temperature_scaling_without_normalisation():
    # x / t is all that matters: (c q, t c) == (q, t) when normalize=False.
    rng = np.random.default_rng(2)
    q, k = jnp.asarray(rand(rng, 6, 4)), jnp.asarray(rand(rng, 6, 4))
    a = L.infonce(q, k, temperature=0.3, normalize=False, symmetric=True)
    b = L.infonce(2.5 * q, k, temperature=0.75, normalize=False, symmetric=True)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    for fn in (L.ntxent, L.decoupled):  # both views enter every logit: scale both, t by c^2
        a = fn(q, k, temperature=0.3, normalize=False)
        b = fn(2.0 * q, 2.0 * k, temperature=1.2, normalize=False)
        np.testing.assert_allclose(a, b, rtol=1e-5)
    a = L.siglip(q, k, logit_scale=4.0, logit_bias=-1.0, normalize=False)
    b = L.siglip(2.0 * q, k, logit_scale=2.0, logit_bias=-1.0, normalize=False)
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_infonce_bounds():
    rng = np.random.default_rng(3)
    b = 9
    q, k = rand(rng, b, 5), rand(rng, b, 5)
    per = np.asarray(L.infonce(q, k, reduction="none"))
    assert np.all(per >= 0)
    # identical random-free embeddings: every logit equal -> exactly log(#candidates)
    same = np.ones((b, 5), np.float32)
    np.testing.assert_allclose(L.infonce(same, same), np.log(b), rtol=1e-6)
    np.testing.assert_allclose(L.ntxent(same, same), np.log(2 * b - 1), rtol=1e-6)


def test_symmetric_is_mean_of_both_directions():
    rng = np.random.default_rng(4)
    q, k = rand(rng, 5, 3), rand(rng, 5, 3)
    np.testing.assert_allclose(L.infonce(q, k, symmetric=True),
                               0.5 * (L.infonce(q, k) + L.infonce(k, q)), rtol=1e-6)
