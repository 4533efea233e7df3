"""MoCo queue, k-means, single-cluster batches and TAS-Balanced against their definitions."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import samplers as S
from tests.samplers.test_stochastic import P_MIN, chi2_p


def test_queue_is_a_fifo_of_the_last_size_keys():
    size, d = 7, 3
    state = S.queue_init(size, d)
    push = jax.jit(S.queue_push)
    ref = collections.deque(maxlen=size)
    rng = np.random.default_rng(0)
    for n in (3, 2, 4, 7, 1, 5):
        keys = rng.standard_normal((n, d)).astype(np.float32)
        state = push(state, keys)
        ref.extend(keys)
        assert int(state.count) == len(ref)
        held = np.asarray(state.keys)[np.asarray(state.mask)]
        # same set of rows; the oldest slot is the one ptr points at once the queue is full
        np.testing.assert_array_equal(np.sort(held, axis=0), np.sort(np.array(ref), axis=0))
        if len(ref) == size:
            order = (int(state.ptr) + np.arange(size)) % size
            np.testing.assert_array_equal(np.asarray(state.keys)[order], np.array(ref))


def test_queue_init_with_a_key_is_full_of_unit_vectors():
    q = S.queue_init(16, 4, key=jax.random.key(0), dtype=jnp.bfloat16)
    assert q.keys.dtype == jnp.bfloat16 and int(q.count) == 16 and bool(q.mask.all())
    np.testing.assert_allclose(np.linalg.norm(np.asarray(q.keys, np.float32), axis=1), 1.0, rtol=1e-2)
    g = jax.grad(lambda x: jnp.sum(S.queue_push(S.queue_init(4, 2), x).keys))(jnp.ones((2, 2)))
    np.testing.assert_array_equal(g, 0.0)  # a memory bank holds constants


def test_queue_records_ids_and_steps_and_excludes_an_anchor_own_keys():
    q = S.queue_init(5, 2)
    push = jax.jit(S.queue_push)
    for step, ids in enumerate(([3, 7], [1, 3], [9, 4])):  # 6 keys into 5 slots: the first key is overwritten
        q = push(q, jnp.ones((2, 2)) * step, ids=jnp.asarray(ids), step=step)
    np.testing.assert_array_equal(q.ids, [4, 7, 1, 3, 9])  # slot 0 went round: ptr 0,2,4 -> slots 0,1 | 2,3 | 4,0
    np.testing.assert_array_equal(q.steps, [2, 0, 1, 1, 2])
    excl = np.asarray(q.excludes(jnp.asarray([3, 8, 4])))
    np.testing.assert_array_equal(excl, [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    stats = S.queue_stats(q, 3)  # ages at step 3: 1, 3, 2, 2, 1
    assert float(stats["fill"]) == 1.0 and float(stats["age"]) == pytest.approx((1 + 3 + 2 + 2 + 1) / 5)
    offered = S.queue_stats(q, 3, valid=jnp.asarray([True, False, True, False, True]))  # the age of what is offered
    assert float(offered["fill"]) == 1.0 and float(offered["age"]) == pytest.approx((1 + 2 + 1) / 3)
    assert float(S.queue_stats(q, 3, valid=jnp.zeros(5, bool))["age"]) == float(stats["age"])  # none offered yet
    half = S.queue_stats(S.queue_push(S.queue_init(8, 2), jnp.ones((2, 2)), ids=jnp.arange(2), step=4), 6)
    assert float(half["fill"]) == 0.25 and float(half["age"]) == 2.0
    assert not np.asarray(S.queue_init(3, 2).excludes(jnp.asarray([-1, 0]))).any()  # empty slots are nobody's


def test_instance_memory_updates_its_slots_in_place_as_wu_et_al():
    """v_i <- normalize(m v_i + (1 - m) f_i / |f_i|) for the written slots (float64 NumPy), the rest untouched."""
    n, d = 9, 4
    mem = S.instance_init(n, d, key=jax.random.key(3))
    v0 = np.asarray(mem.keys, np.float64)
    np.testing.assert_allclose(np.linalg.norm(v0, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(mem.ids, np.arange(n))
    assert int(mem.count) == n and np.array_equal(np.asarray(mem.excludes(jnp.arange(n))), np.eye(n, dtype=bool))
    rng = np.random.default_rng(0)
    f = rng.standard_normal((3, d)) * 5.0
    ids = np.array([7, 2, 4])
    new = jax.jit(S.instance_update)(mem, jnp.asarray(ids), jnp.asarray(f, jnp.float32), momentum=0.5, step=6)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    want = v0.copy()
    want[ids] = unit(0.5 * v0[ids] + 0.5 * unit(f))
    np.testing.assert_allclose(np.asarray(new.keys), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new.steps, np.where(np.isin(np.arange(n), ids), 6, -1))
    assert float(S.queue_stats(new, 8)["fill"]) == pytest.approx(3 / n)  # three slots written, 2 steps ago
    assert float(S.queue_stats(new, 8)["age"]) == 2.0
    g = jax.grad(lambda x: jnp.sum(S.instance_update(mem, jnp.asarray(ids), x).keys))(jnp.ones((3, d)))
    np.testing.assert_array_equal(g, 0.0)  # the memory holds constants
    with pytest.raises(ValueError, match=r"momentum must be >= 0.0 and < 1.0, got 1.0"):
        S.instance_update(mem, jnp.asarray(ids), jnp.asarray(f, jnp.float32), momentum=1.0)
    with pytest.raises(ValueError, match=r"ids must be int of shape \[n\] = \[3\]"):
        S.instance_update(mem, jnp.arange(2), jnp.asarray(f, jnp.float32))


def blobs(rng, k, per, d, spread=20.0):
    centres = rng.standard_normal((k, d)) * spread
    return np.concatenate([c + rng.standard_normal((per, d)) for c in centres]).astype(np.float32)


def test_kmeans_recovers_planted_clusters_and_lloyd_never_increases_inertia():
    rng = np.random.default_rng(1)
    x = blobs(rng, 5, 40, 6)
    res = S.kmeans(jax.random.key(0), x, 5, iters=10, chunk_size=64)
    planted = np.repeat(np.arange(5), 40)
    a = np.asarray(res.assignments)
    # a bijection between found and planted clusters
    assert all(len(set(a[planted == c])) == 1 for c in range(5)) and len(set(a)) == 5
    d2 = ((x[:, None, :] - np.asarray(res.centroids)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(a, d2.argmin(1))
    np.testing.assert_allclose(float(res.inertia), d2.min(1).sum(), rtol=1e-4)
    inertia = [float(S.kmeans(jax.random.key(3), x + rng.standard_normal(x.shape) * 8, 8, iters=i).inertia) for i in (0, 1, 3)]
    assert inertia[0] >= inertia[1] >= inertia[2]


def test_cluster_batches_are_single_cluster_disjoint_and_complete():
    sizes = [17, 3, 40, 8, 12, 1]
    ids = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(2).shuffle(ids)
    out = S.cluster_batches(jax.random.key(1), ids, 8)
    idx, pure = np.asarray(out.indices), np.asarray(out.single_cluster)
    assert idx.shape == (len(ids) // 8, 8)
    assert len(np.unique(idx)) == idx.size, "every item at most once"
    assert pure.sum() == sum(s // 8 for s in sizes)
    for row, p in zip(idx, pure):
        if p:
            assert len(set(ids[row])) == 1
    # full clusters contribute all of their full batches
    per_cluster = collections.Counter(int(ids[row[0]]) for row, p in zip(idx, pure) if p)
    assert per_cluster == collections.Counter({c: s // 8 for c, s in enumerate(sizes) if s >= 8})


def test_tas_balanced_draws_one_topic_uniformly_and_balances_margin_bins():
    rng = np.random.default_rng(3)
    sizes = [40, 10, 25]  # topics of unequal size are still drawn uniformly
    ids = np.repeat(np.arange(3), sizes)
    q = len(ids)
    # margins: 90% of the pairs in the lowest of 4 bins, so unbalanced sampling is easy to detect
    margins = np.where(rng.random((q, 40)) < 0.9, rng.uniform(0.0, 0.1, (q, 40)), rng.uniform(0.1, 1.0, (q, 40)))
    margins[:, 0], margins[:, 1] = 0.0, 1.0  # every query spans [0, 1]
    pair_mask = np.ones((q, 40), bool)
    pair_mask[:, 2] = False
    draw = jax.jit(jax.vmap(lambda k: S.tas_balanced(k, ids, margins.astype(np.float32), 8, num_bins=4, pair_mask=pair_mask)))
    out = draw(jax.random.split(jax.random.key(4), 3000))
    queries, pairs, mask = map(np.asarray, out)
    assert mask[:, :8].all()  # every topic has >= 8 queries
    topics = ids[queries]
    assert (topics == topics[:, :1]).all(), "one topic per batch"
    assert chi2_p(np.bincount(topics[:, 0], minlength=3), np.ones(3)) > P_MIN
    assert all(len(set(r)) == 8 for r in queries), "queries without replacement"
    assert not (pairs == 2).any(), "masked pairs are never drawn"
    all_bins = np.clip(np.floor(margins * 4), 0, 3).astype(int)  # every query spans [0, 1]
    nonempty = np.stack([((all_bins == j) & pair_mask).any(1) for j in range(4)], 1)  # [Q, 4]
    expected = (nonempty / nonempty.sum(1, keepdims=True))[queries.ravel()].sum(0)  # uniform over non-empty bins
    got = np.bincount(all_bins[queries, pairs].ravel(), minlength=4)
    assert chi2_p(got, expected) > P_MIN
    raw = np.stack([((all_bins == j) & pair_mask).sum(1) for j in range(4)], 1)[queries.ravel()].sum(0)
    assert chi2_p(got, raw) < P_MIN  # uniform pair sampling would follow the raw bin sizes
    # inside a bin, pairs are uniform: the two pairs pinned at margins 0 and 1 get 1/(#bins * bin size)
    q0 = queries[:, 0]
    p_top = 1.0 / (nonempty[q0].sum(1) * ((all_bins[q0] == 3) & pair_mask[q0]).sum(1))
    assert abs((pairs[:, 0] == 1).sum() - p_top.sum()) < 5 * np.sqrt(p_top.sum())
    small = S.tas_balanced(jax.random.key(5), np.array([0, 0, 0]), np.ones((3, 2), np.float32), 5)
    np.testing.assert_array_equal(small.mask, [True, True, True, False, False])
