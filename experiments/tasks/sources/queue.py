"""MoCo's queue (He et al. 2020): the keys of a momentum key encoder's last batches, FIFO, replicated on every
device; it starts as random unit keys (MoCo's initialisation), so every anchor sees them from the first step.
The main job runs MoCo as its CIFAR demo does: both views as queries, the queue the only negatives."""

import numpy as np

from experiments.tasks.sources import Bank, MemberField, Source, register
from jaxneg import samplers

#: the main job's MoCo: the CIFAR demo's symmetric loss, queue-only negatives, momentum 0.99
MOCO = {"loss.name": "infonce", "moco.enabled": True, "moco.symmetric": True, "moco.momentum": 0.99}


def _count(c):
    in_batch = c.batch_size - 1 if c.moco.batch_negatives else 0
    return c.negatives.subsample or c.moco.queue_size + in_batch


register(Source(
    name="queue", task="views", rank=2, summary="MoCo: a momentum key encoder's last n keys, the only negatives",
    uses=lambda c: bool(c.moco.enabled and c.moco.queue_size), count=_count,
    setting=lambda n, job: {**MOCO, "moco.queue_size": n} if n >= 2 * job.batch_size else None,  # 2B keys a step
    axis="moco.queue_size", config={"moco.queue_size": 0},
    members=(MemberField("moco.queue_size", "queue_size", np.int32),),  # queues of any length > 0 share a program
    bank=Bank("queue", holds="keys",
              init=lambda c, num_train, dim, key: samplers.queue_init(c.moco.queue_size, dim, key=key),
              push=lambda bank, p, hp: samplers.queue_push(bank, p.values, size=hp.queue_size, ids=p.ids, step=p.step),
              valid=lambda bank, step, hp: bank.mask, size=lambda bank, hp, config: hp.queue_size),
    bank_only=lambda c: not c.moco.batch_negatives,
    reports=("bank_fill", "bank_age", "bank_drift")))

