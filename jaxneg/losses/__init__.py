"""Pure, jit-able contrastive and metric-learning losses.

Every loss is registered in :data:`jaxneg.registry.LOSSES` under its function name;
``get(name)`` resolves a config string and lists the valid names on a typo.
"""

from jaxneg.losses._pairwise import Lse, Meta, Sum, masked_lse, pair_stats
from jaxneg.losses.contrastive import (
    additive_margin,
    debiased,
    decoupled,
    hard_negative,
    infonce,
    l2_normalize,
    ntxent,
    siglip,
    soft_target,
    supcon,
)
from jaxneg.losses.metric_learning import multi_similarity, pairwise_distance, triplet
from jaxneg.losses.ranking import bpr, margin_mse, sampled_softmax
from jaxneg.registry import LOSSES

#: Losses that accept ``block_size=`` (streaming, never forming the [B, M] logits): read off the registry.
STREAMING = tuple(LOSSES.select(streams=True))


def get(name: str):
    """The loss registered as ``name``; an unknown name raises with the valid names."""
    return LOSSES.get(name)


__all__ = [
    "LOSSES",
    "STREAMING",
    "get",
    "infonce",
    "additive_margin",
    "ntxent",
    "decoupled",
    "debiased",
    "hard_negative",
    "supcon",
    "siglip",
    "soft_target",
    "triplet",
    "multi_similarity",
    "sampled_softmax",
    "bpr",
    "margin_mse",
    "l2_normalize",
    "pairwise_distance",
    "pair_stats",
    "masked_lse",
    "Lse",
    "Sum",
    "Meta",
]
