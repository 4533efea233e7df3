"""The in-batch views of the other examples: all of them (``batch``), or ``n`` random ones per anchor
(``subsampled``, :func:`jaxneg.samplers.subsample`: a fresh subset per anchor and step)."""

import numpy as np

from experiments.tasks.sources import MemberField, Source, register

#: the losses whose in-batch negatives a views source can subsample or extend with a bank, and the anchor
#: rows (= in-batch columns) each example gives them: NT-Xent's two views, InfoNCE's query
ANCHOR_ROWS = {"ntxent": 2, "infonce": 1, "additive_margin": 1}


def in_batch(config) -> int:
    """The in-batch negatives of each anchor: ``2B - 2`` (NT-Xent) or ``B - 1`` (query -> key)."""
    v = ANCHOR_ROWS.get(config.loss.name, 1)
    return v * config.batch_size - v


def _subsampled(n, job):
    full = job.views * job.batch_size - job.views
    return {"negatives.subsample": n} if 1 <= n <= full else None


register(Source(
    name="batch", task="views", summary="every in-batch view of the other examples",
    uses=lambda c: True, rank=0, count=in_batch))

register(Source(
    name="subsampled", task="views", summary="n random in-batch negatives per anchor, a fresh subset every step",
    uses=lambda c: bool(c.negatives.subsample), count=lambda c: c.negatives.subsample,
    setting=_subsampled, axis="negatives.subsample", config={"negatives.subsample": 0},
    members=(MemberField("negatives.subsample", "subsample", np.int32),)))  # any n > 0 shares a program
