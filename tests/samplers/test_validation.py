"""Bad inputs fail before any compute, with an error naming the argument and the expected shape/range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneg import samplers as S

K = jax.random.key(0)
Q, C = jnp.ones((4, 8)), jnp.ones((50, 8))

CASES = {
    "uniform_num_items": (lambda: S.uniform(K, 0, (3,)), "num_items must be an int >= 1"),
    "uniform_exclude_rows": (lambda: S.uniform(K, 10, (3, 2), exclude=jnp.zeros((4, 1), jnp.int32)), r"exclude must have shape \[B, P\] with B=3"),
    "uniform_exclude_float": (lambda: S.uniform(K, 10, (3, 2), exclude=jnp.zeros((3, 1))), "exclude must be integer"),
    "popularity_negative": (lambda: S.popularity(K, jnp.array([1.0, -1.0]), (3,)), "counts must be non-negative"),
    "popularity_all_zero": (lambda: S.popularity(K, jnp.zeros(3), (3,)), "at least one positive"),
    "popularity_alpha": (lambda: S.popularity(K, jnp.ones(3), (3,), alpha=-1.0), "alpha must be >= 0"),
    "popularity_counts_2d": (lambda: S.popularity(K, jnp.ones((3, 2)), (3,)), r"counts must have shape \[N\]"),
    "hard_topk_dim": (lambda: S.hard_topk(Q, jnp.ones((50, 7)), 3), r"corpus must have shape \[M, D\] with D=8"),
    "hard_topk_k": (lambda: S.hard_topk(Q, C, 0), "k must be an int >= 1"),
    "hard_topk_skip": (lambda: S.hard_topk(Q, C, 2, skip_top=-1), "skip_top must be an int >= 0"),
    "hard_topk_margin_needs_positive": (lambda: S.hard_topk(Q, C, 2, absolute_margin=0.1), r"need positive_scores \[B\]"),
    "hard_topk_positive_shape": (lambda: S.hard_topk(Q, C, 2, absolute_margin=0.1, positive_scores=jnp.ones(3)), r"positive_scores must have shape \[B\] = \[4\]"),
    "hard_topk_relative_range": (lambda: S.hard_topk(Q, C, 2, relative_margin=1.5, positive_scores=jnp.ones(4)), "relative_margin must be >= 0.0 and <= 1.0"),
    "hard_topk_block": (lambda: S.hard_topk(Q, C, 2, block_size=0), "block_size must be a positive int"),
    "hard_topk_int_query": (lambda: S.hard_topk(jnp.ones((4, 8), jnp.int32), C, 2), "query must be floating point"),
    "simans_k": (lambda: S.simans(K, jnp.ones((2, 5)), jnp.ones(2), 6), "k must be <= N = 5"),
    "simans_a": (lambda: S.simans(K, jnp.ones((2, 5)), jnp.ones(2), 2, a=0.0), "a must be > 0"),
    "simans_positive": (lambda: S.simans(K, jnp.ones((2, 5)), jnp.ones(3), 2), r"positive_scores must have shape \[B\] = \[2\]"),
    "mochi_top_n": (lambda: S.mochi(K, Q, jnp.ones((4, 3, 8)), top_n=4, num_mix=1), r"top_n must be <= the number of negatives \(3\)"),
    "mochi_pair": (lambda: S.mochi(K, Q, C, top_n=1, num_mix=1), "num_mix > 0 needs top_n >= 2"),
    "mochi_shape": (lambda: S.mochi(K, Q, jnp.ones((5, 3, 8)), top_n=2, num_mix=1), r"negatives must have shape \[M, D\] or \[B, K, D\]"),
    "guided_mask_rows": (lambda: S.guided_mask(Q, jnp.ones((3, 8))), r"M >= B=4"),
    "guided_mask_strategy": (lambda: S.guided_mask(Q, C, strategy="cosine"), "strategy must be one of"),
    "queue_size": (lambda: S.queue_init(0, 4), "size must be an int >= 1"),
    "queue_push_too_many": (lambda: S.queue_push(S.queue_init(2, 8), Q), r"n <= 2"),
    "queue_push_state": (lambda: S.queue_push((jnp.ones((2, 8)), 0, 0), Q), "state must be a Queue"),
    "kmeans_k": (lambda: S.kmeans(K, jnp.ones((3, 2)), 4), "k must be <= N = 3"),
    "cluster_batches_size": (lambda: S.cluster_batches(K, jnp.zeros(5, jnp.int32), 6), "batch_size must be <= N = 5"),
    "cluster_batches_negative_id": (lambda: S.cluster_batches(K, jnp.array([0, -1]), 1), "cluster_ids must be >= 0"),
    "tas_margins": (lambda: S.tas_balanced(K, jnp.zeros(5, jnp.int32), jnp.ones((4, 3)), 2), r"margins must have shape \[Q, P\] with Q=5"),
    "tas_pair_mask": (lambda: S.tas_balanced(K, jnp.zeros(5, jnp.int32), jnp.ones((5, 3)), 2, pair_mask=jnp.ones((5, 3))), "pair_mask must be bool"),
    "registry": (lambda: S.get("hardest"), "unknown sampler 'hardest'; valid names: cluster_batches"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_raises_a_named_error(name):
    call, match = CASES[name]
    with pytest.raises(ValueError, match=match):
        call()


def test_registry_resolves_every_public_sampler():
    for name in S.SAMPLERS.names():
        assert getattr(S, name) is S.get(name)
    assert np.asarray(S.get("uniform")(K, 5, (2,))).shape == (2,)
