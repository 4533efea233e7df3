"""Sampling frequencies against their target distributions (chi-square with a fixed key)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxneg import samplers as S
from jaxneg.samplers.stochastic import _inverse_cdf

P_MIN = 1e-4  # a fixed key makes the test deterministic; a wrong distribution gives p ~ 0


def chi2_p(counts, probs, min_expected=20.0):
    """p-value of a chi-square goodness of fit, merging adjacent cells until each expects >= min_expected."""
    counts, probs = np.asarray(counts, np.float64), np.asarray(probs, np.float64)
    assert counts.sum() > 0 and probs.sum() > 0
    expected = probs / probs.sum() * counts.sum()
    assert counts[expected == 0].sum() == 0, "a zero-probability cell was drawn"
    obs, exp, o, e = [], [], 0.0, 0.0
    for ci, ei in zip(counts[expected > 0], expected[expected > 0]):
        o, e = o + ci, e + ei
        if e >= min_expected:
            obs.append(o), exp.append(e)
            o = e = 0.0
    if e > 0:
        obs[-1] += o
        exp[-1] += e
    return stats.chisquare(obs, exp).pvalue


def test_uniform_without_exclusions_is_uniform():
    x = np.asarray(S.uniform(jax.random.key(0), 37, (50_000,)))
    assert x.min() >= 0 and x.max() < 37
    assert chi2_p(np.bincount(x, minlength=37), np.ones(37)) > P_MIN


def test_uniform_never_returns_exclusions_and_is_uniform_over_the_rest():
    n = 12
    exclude = np.array([[0, 3, 3, -1], [11, 11, 11, 11], [5, 99, -7, 6], [0, 1, 2, 3]])
    x = np.asarray(S.uniform(jax.random.key(1), n, (4, 30_000), exclude=exclude))
    for row, ex in zip(x, exclude):
        allowed = np.setdiff1d(np.arange(n), ex)
        assert np.isin(row, allowed).all()
        probs = np.isin(np.arange(n), allowed).astype(float)
        assert chi2_p(np.bincount(row, minlength=n), probs) > P_MIN
    everything = S.uniform(jax.random.key(2), 3, (1, 5), exclude=np.array([[2, 0, 1]]))
    np.testing.assert_array_equal(everything, -1)


def test_popularity_matches_counts_to_the_alpha_and_returns_its_log_q():
    counts = np.array([0, 1, 10, 100, 1000, 0, 5, 37], np.float32)
    idx, log_q = S.popularity(jax.random.key(3), counts, (200, 500), alpha=0.75)
    idx, log_q = np.asarray(idx), np.asarray(log_q)
    target = np.where(counts > 0, counts.astype(np.float64) ** 0.75, 0.0)
    target /= target.sum()
    freq = np.bincount(idx.ravel(), minlength=len(counts))
    assert chi2_p(freq, target) > P_MIN
    assert chi2_p(freq, np.where(counts > 0, counts, 0.0)) < P_MIN  # alpha = 1 is detectably wrong
    np.testing.assert_allclose(log_q, np.log(target[idx]), rtol=1e-5)


def test_two_level_inverse_cdf_resolves_a_heavy_tail():
    # Zipf(1.2) over 2^17 items: the tail items have p ~ 1e-7, at one fp32 CDF's resolution.
    n = 1 << 17
    p = 1.0 / np.arange(1, n + 1) ** 1.2
    p /= p.sum()
    keys = jax.random.split(jax.random.key(4))
    u1, u2 = (jax.random.uniform(k, (2_000_000,)) for k in keys)
    freq = np.bincount(np.asarray(_inverse_cdf(jnp.asarray(p, jnp.float32), u1, u2)), minlength=n)
    assert chi2_p(freq, p) > P_MIN


def test_two_level_inverse_cdf_reaches_every_tail_item():
    # A head of mass 1 - 1e-3 and 2^17 tail items of p ~ 7.6e-9 each. A single fp32 inverse
    # CDF maps its 2^23-point uniform grid onto only ~8,400 of the tail items, so the tail
    # draws collide ~10x more often than under the true (uniform) tail distribution.
    n = 1 << 17
    p = np.full(n, 1e-3 / (n - 1))
    p[0] = 1 - 1e-3
    keys = jax.random.split(jax.random.key(9))
    u1, u2 = (jax.random.uniform(k, (2_000_000,)) for k in keys)
    got = np.asarray(_inverse_cdf(jnp.asarray(p, jnp.float32), u1, u2))
    tail = got[got > 0]
    assert abs(len(tail) - 2000) < 5 * np.sqrt(2000)
    collisions = len(tail) - len(np.unique(tail))
    expected = len(tail) - (n - 1) * (1 - (1 - 1 / (n - 1)) ** len(tail))  # ~15
    assert collisions <= expected + 6 * np.sqrt(expected) + 1, (collisions, expected)


def test_simans_draws_without_replacement_proportional_to_its_weights():
    scores = jnp.array([[0.9, 0.1, 0.5, 0.7, -jnp.inf, 0.2, 0.65]], jnp.float32)
    pos = jnp.array([0.8], jnp.float32)
    a, b = 4.0, -0.1
    draw = jax.jit(jax.vmap(lambda k: S.simans(k, scores, pos, 3, a=a, b=b, exclude=jnp.array([[0]]))))
    got = draw(jax.random.split(jax.random.key(5), 40_000))
    idx = np.asarray(got.indices)[:, 0, :]  # [draws, 3]
    assert np.all(np.sort(idx, axis=1)[:, 1:] != np.sort(idx, axis=1)[:, :-1]), "no repeats in a row"
    assert not np.isin(idx, [0, 4]).any(), "excluded and -inf candidates are never drawn"
    w = np.exp(-a * (np.asarray(scores[0], np.float64) - 0.8 - b) ** 2)
    w[[0, 4]] = 0
    assert chi2_p(np.bincount(idx[:, 0], minlength=7), w) > P_MIN  # the first draw is categorical(w)
    assert chi2_p(np.bincount(idx[:, 0], minlength=7), np.where(w > 0, 1.0, 0.0)) < P_MIN
    # the second draw: P(j second) = sum_i w_i/W * w_j/(W - w_i)
    W = w.sum()
    second = np.array([sum(w[i] / W * w[j] / (W - w[i]) for i in range(7) if i != j and w[i] > 0) for j in range(7)])
    assert chi2_p(np.bincount(idx[:, 1], minlength=7), second) > P_MIN
    np.testing.assert_allclose(np.asarray(got.scores)[:, 0, 0], np.asarray(scores)[0, idx[:, 0]])


def test_simans_pads_when_fewer_candidates_than_k():
    m = S.simans(jax.random.key(6), jnp.array([[0.3, -jnp.inf, 0.1]]), jnp.array([0.5]), 3)
    np.testing.assert_array_equal(m.mask, [[True, True, False]])
    assert int(m.indices[0, 2]) == -1 and set(np.asarray(m.indices[0, :2]).tolist()) == {0, 2}


@pytest.mark.parametrize(
    "draw",
    [
        lambda k: S.uniform(k, 100, (4, 8), exclude=jnp.zeros((4, 2), jnp.int32)),
        lambda k: S.popularity(k, jnp.arange(50.0), (64,))[0],
        lambda k: S.simans(k, jnp.linspace(0, 1, 40)[None], jnp.array([0.9]), 5).indices,
        lambda k: S.mochi(k, jnp.ones((2, 4)), jnp.arange(40.0).reshape(2, 5, 4) % 7, top_n=3, num_mix=2),
        lambda k: S.cluster_batches(k, jnp.arange(64) % 4, 8).indices,
        lambda k: S.tas_balanced(k, jnp.arange(64) % 4, jnp.linspace(0, 1, 64 * 6).reshape(64, 6), 8).pairs,
        lambda k: S.kmeans(k, jnp.arange(120.0).reshape(40, 3) ** 1.5, 5, iters=0).centroids,
    ],
    ids=["uniform", "popularity", "simans", "mochi", "cluster_batches", "tas_balanced", "kmeans"],
)
def test_samplers_are_pure_functions_of_the_key(draw):
    a, b, c = draw(jax.random.key(7)), draw(jax.random.key(7)), draw(jax.random.key(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_subsample_keeps_exactly_n_random_candidates_per_row():
    rng = np.random.default_rng(0)
    cand = jnp.asarray(rng.random((40, 30)) < 0.6)
    counts = np.asarray(cand).sum(1)
    f = jax.jit(S.subsample)
    seen = []
    for n in (1, 5, 30):  # a traced n, one compilation
        for seed in range(3):
            keep = np.asarray(f(jax.random.key(seed), cand, jnp.int32(n)))
            assert not (keep & ~np.asarray(cand)).any()  # only candidates
            np.testing.assert_array_equal(keep.sum(1), np.minimum(n, counts))
            seen.append(keep)
    assert not np.array_equal(seen[0], seen[1])  # a fresh subset per key
    # uniform over the candidates: every candidate of a row is kept equally often
    keys = jax.random.split(jax.random.key(1), 2000)
    freq = np.asarray(jax.vmap(lambda k: S.subsample(k, cand[:1], 3))(keys)).mean(0)[0]
    row = np.asarray(cand[0])
    np.testing.assert_allclose(freq[row], 3 / row.sum(), atol=0.05)
    assert (freq[~row] == 0).all()
    # every subset equally likely, not just every column: the 6 pairs of 4 candidates
    four = jnp.asarray([[True, False, True, True, True]])
    pairs = np.asarray(jax.vmap(lambda k: S.subsample(k, four, 2))(keys))[:, 0]
    _, counts = np.unique(pairs[:, [0, 2, 3, 4]], axis=0, return_counts=True)
    assert len(counts) == 6 and np.all(np.abs(counts / 2000 - 1 / 6) < 0.035)
    # a traced n below 1 keeps nothing, as does a row without candidates
    assert not np.asarray(f(jax.random.key(0), cand, jnp.int32(0))).any()
    assert not np.asarray(S.subsample(jax.random.key(0), jnp.zeros((2, 3), bool), 2)).any()
    with pytest.raises(ValueError, match="n .* must be an int >= 1, got 0"):
        S.subsample(jax.random.key(0), cand, 0)
    with pytest.raises(ValueError, match="candidates must be bool of shape"):
        S.subsample(jax.random.key(0), jnp.ones((3,), bool), 1)
