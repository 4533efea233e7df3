"""Negative samplers, hard-negative mining and batch composition.

Pure, jit-able functions: randomness only through an explicit ``jax.random`` key, state
(the MoCo queue) as an explicit pytree in and out. Each sampler is registered in
:data:`jaxneg.registry.SAMPLERS` under its function name.

==================  =====================================================================
``uniform``         uniform item indices, never one of the row's ``exclude`` (positives)
``subsample``       n random candidates per row (fewer negatives at a fixed batch)
``popularity``      draws ``∝ count^alpha`` with their ``log_q`` for the log-Q correction
``hard_topk``       exact streamed top-k mining with false-negative filters
``simans``          SimANS ambiguous negatives (Gumbel top-k, no replacement)
``mochi``           MoCHi synthetic hard negatives (mixing)
``queue_*``         FIFO memory of negatives (MoCo queue, memory bank) with ids and ages
``instance_*``      Wu et al.'s instance memory: one slot per example, updated in place
``guided_mask``     GISTEmbed guide-model false-negative mask (``infonce(mask=...)``)
``kmeans``          k-means++ / Lloyd in JAX (topics for batch composition)
``cluster_batches`` single-cluster batches (NGAME / topic-aware)
``tas_balanced``    TAS-Balanced: one topic per batch, margin-balanced pairs
==================  =====================================================================
"""

from jaxneg.registry import SAMPLERS
from jaxneg.samplers.batching import ClusterBatches, KMeans, TASBatch, cluster_batches, kmeans, tas_balanced
from jaxneg.samplers.memory import Queue, instance_init, instance_update, queue_init, queue_push, queue_stats
from jaxneg.samplers.mining import Mined, guided_mask, hard_topk, mochi, score_threshold
from jaxneg.samplers.stochastic import popularity, popularity_log_q, simans, subsample, uniform

SAMPLERS.register("queue_push")(queue_push)
SAMPLERS.register("instance_update")(instance_update)


def get(name: str):
    """The sampler registered as ``name``; an unknown name raises with the valid names."""
    return SAMPLERS.get(name)


__all__ = [
    "SAMPLERS",
    "get",
    "uniform",
    "subsample",
    "queue_stats",
    "popularity",
    "popularity_log_q",
    "hard_topk",
    "score_threshold",
    "simans",
    "mochi",
    "guided_mask",
    "queue_init",
    "queue_push",
    "instance_init",
    "instance_update",
    "Queue",
    "kmeans",
    "cluster_batches",
    "tas_balanced",
    "Mined",
    "KMeans",
    "ClusterBatches",
    "TASBatch",
]
