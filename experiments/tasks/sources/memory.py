"""A FIFO bank of the encoder's own recent view-1 embeddings, stop-gradient (cross-batch memory, Wang et al.
2020): counted as negatives once full and from step ``negatives.memory_from`` (a warm-up while the encoder
drifts fastest, as Wang et al. start theirs)."""

import numpy as np

from experiments.tasks.sources import Bank, MemberField, Source, fifo, register
from experiments.tasks.sources.batch import in_batch


def _setting(n, job):
    full = job.views * job.batch_size - job.views
    if n <= full:
        return None
    if n - full < job.batch_size:
        raise ValueError(f"{n} negatives lie between the full batch ({full} at batch_size={job.batch_size}) and "
                         f"{full + job.batch_size}: a memory bank holds at least one batch ({job.batch_size} slots); "
                         f"use n <= {full} or n >= {full + job.batch_size}")
    return {"negatives.memory": n - full, "negatives.memory_from": job.steps // 3}


register(Source(
    name="memory", task="views", rank=2,
    summary="the whole batch plus a FIFO bank of the encoder's own recent embeddings, counted once full and from "
            "step memory_from (a third of the steps in the main job)",
    uses=lambda c: bool(c.negatives.memory), count=lambda c: c.negatives.subsample or in_batch(c) + c.negatives.memory,
    setting=_setting, axis="negatives.memory", config={"negatives.memory": 0, "negatives.memory_from": 0},
    members=(MemberField("negatives.memory", "memory_size", np.int32),  # banks of any size > 0 share a program
             MemberField("negatives.memory_from", "memory_from", np.int32)),
    bank=Bank("memory", **fifo("negatives.memory", "memory_size"),
              valid=lambda bank, step, hp: bank.mask & (bank.count >= hp.memory_size) & (step >= hp.memory_from)),
    reports=("bank_fill", "bank_age", "bank_drift")))
