"""hard_topk against a brute-force stable argsort; MoCHi and GISTEmbed masks against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import samplers as S
from jaxneg.samplers.mining import GROUP


def brute_topk(q, c, k, exclude=None, skip_top=0, thr=None):
    """float64 scores, filters, stable descending argsort; padded like hard_topk."""
    s = np.asarray(q, np.float64) @ np.asarray(c, np.float64).T
    if thr is not None:
        s[s > thr[:, None]] = -np.inf
    if exclude is not None:
        for i, row in enumerate(np.asarray(exclude)):
            for e in row:
                if 0 <= e < s.shape[1]:
                    s[i, e] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, skip_top : skip_top + k]
    vals = np.take_along_axis(s, order, 1)
    pad = k - order.shape[1]
    order = np.pad(order, ((0, 0), (0, pad)), constant_values=-1)
    vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
    ok = np.isfinite(vals)
    return np.where(ok, order, -1), np.where(ok, vals, -np.inf), ok


def small_ints(rng, *shape):
    """Values in {-2..2}: exact dot products in fp32 and bf16, and many ties."""
    return rng.integers(-2, 3, shape).astype(np.float32)


CONFIGS = {
    # name: (B, M, D, k, skip_top, block_size, row_block_size)
    "one_block": (9, 40, 5, 4, 0, None, None),
    "ragged_blocks_and_tiles": (37, 1000, 6, 5, 0, 96, 16),
    "grouped_selection": (20, 4 * 1024 + 77, 8, 6, 2, 1024, 8),
    "k_larger_than_corpus": (5, 7, 3, 9, 1, 4, 2),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hard_topk_equals_stable_argsort_with_ties_and_exclusions(name, dtype):
    b, m, d, k, skip, bs, rb = CONFIGS[name]
    rng = np.random.default_rng(len(name) + m)
    q, c = small_ints(rng, b, d), small_ints(rng, m, d)
    c[m // 2] = c[1]  # duplicate documents: equal scores, the lower index must win
    exclude = rng.integers(-1, m, (b, 3))
    exclude[0, 0] = int(np.argmax(q[0] @ c.T))  # the best document is excluded
    got = S.hard_topk(
        jnp.asarray(q, dtype), jnp.asarray(c, dtype), k, exclude=exclude, skip_top=skip, block_size=bs, row_block_size=rb
    )
    want = brute_topk(q, c, k, exclude, skip)
    np.testing.assert_array_equal(got.indices, want[0])
    np.testing.assert_array_equal(got.scores, want[1])
    np.testing.assert_array_equal(got.mask, want[2])
    assert got.scores.dtype == jnp.float32 and got.indices.dtype == jnp.int32


def test_grouped_selection_path_is_taken():
    _, m, _, k, skip, bs, _ = CONFIGS["grouped_selection"]
    assert bs % GROUP == 0 and bs // GROUP > 2 * (k + skip)


def test_filters_match_brute_force_and_pad_short_rows():
    rng = np.random.default_rng(0)
    b, m, d, k = 16, 300, 8, 12
    q, c = rng.standard_normal((b, d)).astype(np.float32), rng.standard_normal((m, d)).astype(np.float32)
    pos = (rng.standard_normal(b) * 3).astype(np.float32)
    kw = dict(max_score=2.0, absolute_margin=0.5, relative_margin=0.1, positive_scores=pos)
    thr = np.minimum(2.0, np.minimum(pos - 0.5, pos - 0.1 * np.abs(pos)))
    got = S.hard_topk(q, c, k, block_size=64, row_block_size=8, **kw)
    idx, vals, ok = brute_topk(q, c, k, thr=thr)
    np.testing.assert_array_equal(got.indices, idx)
    np.testing.assert_allclose(got.scores, vals, rtol=1e-5, atol=1e-5)
    assert (~np.asarray(got.mask)).any(), "some rows should have fewer than k survivors"
    assert np.all(np.asarray(got.scores)[np.asarray(got.mask)] <= np.repeat(thr, k).reshape(b, k)[np.asarray(got.mask)])


def test_relative_margin_is_below_a_negative_positive_score():
    # s+ = -0.5, relative margin 0.2: keep s <= -0.6; the naive s+ (1 - m) = -0.4 would keep -0.55
    q = np.array([[1.0]], np.float32)
    c = np.array([[-0.55], [-0.7], [-0.45]], np.float32)
    got = S.hard_topk(q, c, 3, relative_margin=0.2, positive_scores=np.array([-0.5], np.float32))
    np.testing.assert_array_equal(got.indices, [[1, -1, -1]])
    np.testing.assert_array_equal(got.mask, [[True, False, False]])


def test_hard_topk_under_jit_matches_eager():
    rng = np.random.default_rng(3)
    q, c = rng.standard_normal((33, 16)).astype(np.float32), rng.standard_normal((500, 16)).astype(np.float32)
    f = jax.jit(lambda q, c: S.hard_topk(q, c, 7, block_size=128))
    np.testing.assert_array_equal(f(q, c).indices, S.hard_topk(q, c, 7).indices)


def test_guided_mask_matches_numpy_and_never_masks_the_positive():
    rng = np.random.default_rng(4)
    gq, gk = rng.standard_normal((6, 5)), rng.standard_normal((9, 5))
    gk[2] = -gq[2]  # a negative positive similarity: relative margin must stay below it
    g = (gq / np.linalg.norm(gq, axis=1, keepdims=True)) @ (gk / np.linalg.norm(gk, axis=1, keepdims=True)).T
    pos = np.diag(g[:, :6])[:, None]
    for strategy, thr in (("absolute", pos - 0.1), ("relative", pos - 0.1 * np.abs(pos))):
        got = np.asarray(S.guided_mask(gq.astype(np.float32), gk.astype(np.float32), margin=0.1, strategy=strategy))
        want = (g > thr) & ~np.eye(6, 9, dtype=bool)
        np.testing.assert_array_equal(got, want)
        assert got[2].sum() >= 1  # with g+ < 0 something scores above the positive


def test_mochi_mixes_lie_on_the_sphere_in_the_span_of_the_hardest_and_carry_no_gradient():
    rng = np.random.default_rng(5)
    b, kneg, d, top_n = 3, 12, 16, 4
    q, n = rng.standard_normal((b, d)).astype(np.float32), rng.standard_normal((b, kneg, d)).astype(np.float32)
    out = S.mochi(jax.random.key(0), q, n, top_n=top_n, num_mix=5, num_query_mix=3)
    assert out.shape == (b, 8, d)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    nn = n / np.linalg.norm(n, axis=2, keepdims=True)
    for i in range(b):
        hard = nn[i][np.argsort(-(nn[i] @ qn[i]), kind="stable")[:top_n]]  # [top_n, D]
        for basis, rows in ((hard, out[i, :5]), (np.vstack([hard, qn[i]]), out[i, 5:])):
            coef, *_ = np.linalg.lstsq(basis.T, np.asarray(rows).T, rcond=None)
            np.testing.assert_allclose(basis.T @ coef, np.asarray(rows).T, atol=1e-5)
            assert np.all(coef >= -1e-5), "mixes are convex combinations (before normalising)"
        # a query mix puts weight beta <= 0.5 on the query... relative to the negative it mixes
        coef_q = np.linalg.lstsq(np.vstack([hard, qn[i]]).T, np.asarray(out[i, 5:]).T, rcond=None)[0]
        assert np.all(coef_q[-1] <= coef_q[:-1].sum(0) + 1e-5)
    g = jax.grad(lambda q: jnp.sum(S.mochi(jax.random.key(0), q, n, top_n=top_n, num_mix=2, num_query_mix=2)))(q)
    np.testing.assert_array_equal(g, 0.0)


def test_mochi_with_a_shared_bank_uses_each_querys_hardest():
    rng = np.random.default_rng(6)
    q, bank = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((50, 8)).astype(np.float32)
    out = S.mochi(jax.random.key(1), q, bank, top_n=2, num_mix=3)
    bn = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    for i in range(4):
        hard = bn[np.argsort(-(bn @ q[i]), kind="stable")[:2]]
        coef = np.linalg.lstsq(hard.T, np.asarray(out[i]).T, rcond=None)[0]
        np.testing.assert_allclose(hard.T @ coef, np.asarray(out[i]).T, atol=1e-5)


def test_hard_topk_under_shard_map_mines_each_devices_queries():
    """Queries sharded over 4 devices, the corpus replicated: the same result as one device."""
    from jax.sharding import PartitionSpec as P

    from jaxneg import parallel

    rng = np.random.default_rng(11)
    q = jnp.asarray(rng.standard_normal((8, 16)), jnp.float32)
    corpus = jnp.asarray(rng.standard_normal((300, 16)), jnp.float32)
    ex = jnp.asarray(rng.integers(0, 300, (8, 2)), jnp.int32)
    want = S.hard_topk(q, corpus, 5, exclude=ex, block_size=128, row_block_size=2)
    mesh = parallel.data_mesh("d", jax.devices()[:4])
    f = jax.shard_map(lambda q, c, e: tuple(S.hard_topk(q, c, 5, exclude=e, block_size=128, row_block_size=2)),
                      mesh=mesh, in_specs=(P("d"), P(), P("d")), out_specs=P("d"))
    got = jax.jit(f)(q, corpus, ex)
    np.testing.assert_array_equal(got[0], want.indices)
    np.testing.assert_allclose(got[1], want.scores, rtol=1e-6)
