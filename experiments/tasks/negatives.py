"""The views task's negatives beyond a plain batch: which in-batch columns and bank slots each anchor meets
(subsampled in-batch negatives, a FIFO memory bank, MoCo's queue, Wu et al.'s instance memory), their rules,
and their diagnostics."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments import checks
from experiments.tasks import sources
from experiments.tasks.common import AXIS, StepData
from experiments.tasks.sources import batch
from jaxneg import parallel, samplers


NEGATIVES_LOSSES = batch.ANCHOR_ROWS  # the losses whose in-batch negatives a source can subsample or extend
in_batch_negatives = batch.in_batch


def validate(config, loss) -> None:
    """The rules of the views sources: the shared ones below, then the run's source's own ``validate``."""
    _rules(config, loss)
    sources.of(config).validate(config, loss)


def _rules(config, loss) -> None:
    n, m = config.negatives.subsample, config.negatives.memory
    checks.positive("negatives.subsample", n, 0)
    checks.positive("negatives.memory", m, 0)
    checks.positive("negatives.memory_from", config.negatives.memory_from, 0)
    if config.negatives.instance:
        if config.loss.name not in ("infonce", "additive_margin"):
            raise ValueError(f"config.negatives.instance contrasts one view with its memory slot: it needs loss "
                             f"infonce or additive_margin, got config.loss.name={config.loss.name!r}")
        if m or config.moco.enabled:
            raise ValueError("config.negatives.instance is a memory of its own: set negatives.memory=0 and "
                             "moco.enabled=False")
        if config.loss.kwargs.get("symmetric", False):
            raise ValueError("config.negatives.instance: the memory slots are keys only; set "
                             "config.loss.kwargs.symmetric=False")
        if not 0.0 <= config.negatives.instance_momentum < 1.0:
            raise ValueError(f"config.negatives.instance_momentum must be in [0, 1), got "
                             f"{config.negatives.instance_momentum}")
        if not config.negatives.proximal >= 0.0:
            raise ValueError(f"config.negatives.proximal must be >= 0, got {config.negatives.proximal}")
        return
    if config.negatives.proximal:
        raise ValueError("config.negatives.proximal needs config.negatives.instance=True")
    if not (n or m):
        return
    if config.loss.name not in NEGATIVES_LOSSES:
        raise ValueError(f"config.negatives needs one of the losses {sorted(NEGATIVES_LOSSES)}, got "
                         f"config.loss.name={config.loss.name!r}")
    if n > in_batch_negatives(config) + m:
        raise ValueError(f"config.negatives.subsample={n} must be <= the {in_batch_negatives(config)} in-batch "
                         f"negatives per anchor of batch_size={config.batch_size} with {config.loss.name}"
                         + (f" plus the {m} of the memory bank" if m else ""))
    if n and config.loss.kwargs.get("symmetric", False):
        raise ValueError("config.negatives.subsample counts each anchor's negatives in one direction: it needs "
                         "config.loss.kwargs.symmetric=False")
    if m and config.moco.queue_size:
        raise ValueError("config.negatives.memory and config.moco.queue_size are two memories; use one")
    if m and m < config.batch_size:
        raise ValueError(f"config.negatives.memory={m} must be 0 or >= config.batch_size={config.batch_size} "
                         f"(each step pushes the batch's embeddings)")


def bank_of(config) -> sources.Bank | None:
    """The :class:`~experiments.tasks.sources.Bank` of stale negatives of the run's source, or None."""
    return sources.of(config).bank


def queue_only(config) -> bool:
    """Whether the in-batch keys other than the positive are dropped (MoCo v1/v2, the instance memory)."""
    return bool(sources.of(config).bank_only(config))


def keys_given(config) -> bool:
    """Whether the second encoder input already holds the keys (MoCo's key encoder, the memory slots)."""
    return bool(config.negatives.instance or (config.moco.enabled and not config.moco.symmetric))


def diagnosed(config) -> bool:
    """Whether the step builds a negatives mask and reports its negatives (class overlap; the bank's fill and age)."""
    return bool(config.negatives.subsample or bank_of(config) or queue_only(config))


def candidates(c, key, state, batch, consts, hp):
    """``(bank share, StepData(mask, negatives_mask, diagnostics))``: the negatives of this device's anchors (inside ``shard_map``).

    Candidates: every gathered in-batch column but the anchor itself and its positive (none with
    :func:`queue_only`: MoCo v1/v2 and the instance memory contrast the positive with the bank
    alone, and the other in-batch columns are masked), and, with a bank (the memory, the MoCo
    queue or the instance memory, replicated on every device), every filled slot but those
    holding an earlier embedding of the anchor's own example (a stale copy of its positive; the
    instance memory: its own slot, which is its positive). Each device passes a contiguous ``1/W``
    share of the bank's slots, so the gathered columns hold each slot once. A memory bank counts
    only once full. With
    ``negatives.subsample = n`` all but ``n`` random candidates are dropped
    (:func:`jaxneg.samplers.subsample`: a fresh subset per anchor and step, drawn from the
    in-batch columns and the bank alike). The mask's columns follow the loss' gathered layout,
    ``W`` blocks of (in-batch columns, bank share). Diagnostics (``diagnostics``): the
    fraction of the kept negatives of the anchor's class (labels only counted), and the bank's
    fill fraction and mean key age in steps.
    (About 70 lines in one function: the mask's columns are built in the order the loss gathers them, and
    pieces would have to pass that layout between them.)
    """
    v = NEGATIVES_LOSSES.get(c.loss.name, 1)
    w, d = jax.lax.axis_size(AXIS), jax.lax.axis_index(AXIS)
    ids = batch["id"]
    b = ids.shape[0]
    rows = v * b
    r = jnp.arange(rows)
    own = d * rows + r                                  # the row's own column (infonce: its positive key)
    pos = d * rows + (r + b) % rows if v == 2 else own  # its positive
    col = jnp.arange(w * rows)
    never = None  # in-batch columns that are neither candidates nor the positive
    if queue_only(c):
        cand = jnp.zeros((rows, w, rows), bool)
        never = (col[None, :] != pos[:, None]).reshape(rows, w, rows)
    else:
        cand = ((col[None, :] != own[:, None]) & (col[None, :] != pos[:, None])).reshape(rows, w, rows)
    labels = batch.get("label")
    col_lab = row_lab = None
    if labels is not None:
        row_lab = jnp.tile(labels, v)
        col_lab = jnp.broadcast_to(parallel.gather_replicated(labels, AXIS).reshape(w, 1, b), (w, v, b)).reshape(w, rows)
    extra, diag, fixed, mine = {}, {}, None, None  # (extra: StepData fields)
    spec = bank_of(c)
    if spec is not None:
        bank = state[spec.state]
        valid = spec.valid(bank, batch["step"], hp)
        s = bank.keys.shape[0]
        per = -(-s // w)
        pad = lambda x, value=0: jnp.pad(x, [(0, per * w - s)] + [(0, 0)] * (x.ndim - 1), constant_values=value)
        fixed = jax.lax.dynamic_slice_in_dim(pad(bank.keys), d * per, per)
        extra["negatives_mask"] = jax.lax.dynamic_slice_in_dim(pad(valid), d * per, per)
        mine = pad(bank.excludes(jnp.tile(ids, v)).T).T.reshape(rows, w, per)
        cand = jnp.concatenate([cand, (pad(valid).reshape(1, w, per) & ~mine)], axis=2)
        stats = samplers.queue_stats(bank, batch["step"], size=spec.size(bank, hp, c), valid=valid)
        diag["bank_fill"], diag["bank_age"] = stats["fill"], stats["age"]
        if labels is not None:
            bank_lab = jnp.where(bank.ids >= 0, consts["labels"][jnp.maximum(bank.ids, 0)], -1)
            col_lab = jnp.concatenate([col_lab, pad(bank_lab, -1).reshape(w, per)], axis=1)
        mine = jnp.concatenate([jnp.zeros((rows, w, rows), bool), mine], axis=2).reshape(rows, -1)
        if never is not None:
            never = jnp.concatenate([never, jnp.zeros((rows, w, per), bool)], axis=2)
    cand = cand.reshape(rows, -1)
    keep = samplers.subsample(key, cand, hp.subsample) if c.negatives.subsample else cand
    drop = cand & ~keep
    extra["mask"] = drop if mine is None else drop | mine
    if never is not None:
        extra["mask"] = extra["mask"] | never.reshape(rows, -1)
    if labels is not None:
        extra["row_labels"], extra["column_labels"] = row_lab, col_lab.reshape(-1)
        same = (keep & (row_lab[:, None] == col_lab.reshape(1, -1))).sum()
        diag["negatives_same_class"] = jax.lax.psum(same, AXIS) / jnp.maximum(jax.lax.psum(keep.sum(), AXIS), 1)
    extra["diagnostics"] = diag
    return fixed, StepData(**extra)

