r"""The views task: two random views of each example, contrasted against the other examples' views.

SimCLR (Chen et al. 2020): every example ``x_i`` of the batch gives two views ``a_i, b_i``
(``config.data.view``); the loss contrasts ``a_i`` with ``b_i`` against the other views of the
global batch. Evaluation: kNN and a linear probe on frozen backbone features, tolerance and
RankMe on the test split, alignment / uniformity / contrastive accuracy of view pairs.

With ``config.moco.enabled`` it is MoCo (He et al. 2020): the key view ``b`` is encoded by a
key encoder, the exponential moving average of the query encoder,

    theta_k <- m theta_k + (1 - m) theta_q        (m = config.moco.momentum; m = 0: a copy)

without gradient, and the loss (one with ``extra_negatives``, e.g. ``infonce``) sees, besides
the ``B - 1`` in-batch keys, the ``config.moco.queue_size`` keys of earlier batches held in a
FIFO queue (:func:`jaxneg.samplers.queue_push`; every device pushes the global batch's keys,
so the queue is the same on every device). The queue starts as random unit vectors (MoCo's
initialisation), so every anchor sees ``B - 1 + queue_size`` negatives from the first step.
In a vectorised group the members' queues share the longest one's array, each member using
its own first ``queue_size`` slots (``queue_push(size=...)``; the rest stay masked).

``config.negatives`` (ntxent, infonce) sets the negatives of each anchor at a fixed batch:
``subsample = n`` keeps ``n`` random candidates (a fresh subset per anchor and step), and
``memory = M`` adds a FIFO bank of the encoder's own view-1 embeddings of earlier steps
(stop-gradient; cross-batch memory, Wang et al. 2020), counted as negatives once full (and from
step ``memory_from``). A bank (the memory or the MoCo queue) records each key's example and
step: an anchor never meets its own earlier key, and the run reports the bank's fill and key age
and the share of negatives of the anchor's class (:func:`_negatives`).

References:
  Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations*, ICML 2020.
  He et al., *Momentum Contrast for Unsupervised Visual Representation Learning*, CVPR 2020.
  Wang et al., *Cross-Batch Memory for Embedding Learning*, CVPR 2020.
  Wu et al., *Unsupervised Feature Learning via Non-Parametric Instance Discrimination*, CVPR 2018.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments import checks
from experiments.tasks import common
from experiments.tasks.common import AXIS, Setup, embed, eval_key, first_rows, process_batch
from jaxneg import LOSSES, data, evaluation, parallel, samplers
from jaxneg._array import l2_normalize


def validate(config, loss) -> None:
    """The view (``data.view`` and its keyword arguments), MoCo's settings, and no document sampler."""
    checks.choice("data.view", config.data.view, sorted(data.VIEWS))
    checks.keyword_arguments("data.view_kwargs", data.VIEWS[config.data.view], config.data.view_kwargs, ("key", "x"),
                             optional_only=True)
    if config.moco.enabled or config.moco.queue_size:
        if not config.moco.enabled:
            raise ValueError(f"config.moco.queue_size={config.moco.queue_size} needs config.moco.enabled=True "
                             f"(the queue holds the key encoder's keys)")
        if not 0.0 <= config.moco.momentum < 1.0:
            raise ValueError(f"config.moco.momentum must be in [0, 1), got {config.moco.momentum}")
        checks.positive("moco.queue_size", config.moco.queue_size, 0)
        pushed = _pushed(config)
        if 0 < config.moco.queue_size < pushed:
            raise ValueError(f"config.moco.queue_size={config.moco.queue_size} must be 0 or >= {pushed} (each step "
                             f"pushes the batch's keys" + (", of both views with moco.symmetric" if config.moco.symmetric
                                                          else "") + ")")
        if not config.moco.queue_size and not config.moco.batch_negatives:
            raise ValueError("config.moco: no negatives; set moco.queue_size > 0 (MoCo v1/v2) or "
                             "moco.batch_negatives=True (MoCo v3)")
        if loss.inputs != "pair":
            raise ValueError(f"config.moco needs a loss of (query, key) pairs; {config.loss.name!r} takes "
                             f"{loss.inputs} inputs; valid: {', '.join(LOSSES.select(inputs=('pair',)))}")
        if config.moco.queue_size and not loss.extra_negatives:
            raise ValueError(f"config.moco.queue_size needs a loss that takes extra negatives; "
                             f"{config.loss.name!r} does not; valid: "
                             f"{', '.join(LOSSES.select(extra_negatives=True, inputs=('pair',)))}")
    if config.sampler.name:
        raise ValueError(f"config.sampler.name={config.sampler.name!r} draws documents: it needs task='pairs'")
    checks.choice("model.centre", config.model.centre, CENTRES)
    if not 0.0 <= config.model.centre_momentum < 1.0:
        raise ValueError(f"config.model.centre_momentum must be in [0, 1), got {config.model.centre_momentum}")
    _validate_negatives(config, loss)


#: ``config.model.centre``: what is subtracted from the embeddings before the loss normalises them
CENTRES = ("none", "batch", "running")


def _pushed(config) -> int:
    """Keys a MoCo step pushes into its queue: the batch's, of both views when symmetric."""
    return config.batch_size * (2 if config.moco.symmetric else 1)


#: the losses whose in-batch negatives ``config.negatives`` can subsample and extend with a memory bank,
#: and the anchor rows (= in-batch columns) each sample gives them: ntxent's two views, infonce's query
NEGATIVES_LOSSES = {"ntxent": 2, "infonce": 1, "additive_margin": 1}


def in_batch_negatives(config) -> int:
    """The in-batch negatives of each anchor: ``2B - 2`` (ntxent) or ``B - 1`` (query -> key)."""
    v = NEGATIVES_LOSSES.get(config.loss.name, 1)
    return v * config.batch_size - v


def _validate_negatives(config, loss) -> None:
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


def _bank(config) -> str | None:
    """The state key of the run's bank of stale negatives: ``memory`` (FIFO of the encoder's embeddings),
    ``queue`` (MoCo's keys), ``instance`` (Wu et al.'s one slot per example) or None."""
    if config.negatives.instance:
        return "instance"
    return "memory" if config.negatives.memory else "queue" if config.moco.enabled and config.moco.queue_size else None


def _queue_only(config) -> bool:
    """Whether the in-batch keys other than the positive are dropped (MoCo v1/v2, the instance memory)."""
    return bool(config.negatives.instance or (config.moco.enabled and not config.moco.batch_negatives))


def _keys_given(config) -> bool:
    """Whether the second encoder input already holds the keys (MoCo's key encoder, the memory slots)."""
    return bool(config.negatives.instance or (config.moco.enabled and not config.moco.symmetric))


def _diagnosed(config) -> bool:
    """Whether the step builds a negatives mask and reports its negatives (class overlap; the bank's fill and age)."""
    return bool(config.negatives.subsample or _bank(config) or _queue_only(config))


def needs(config) -> tuple:
    """The dataset fields it reads: ``x``, and ``label`` for a supervised loss or the negatives'
    diagnostics (labels are then only counted, never trained on)."""
    return ("x", "label") if config.loss.supervised or _diagnosed(config) else ("x",)


def host_batch(setup: Setup, seed: int, step: int) -> dict:
    """This process' share of global batch ``step`` (NumPy), a pure function of (seed, step)."""
    idx, b = process_batch(setup, seed, step)
    out = {"x": b["x"], "id": idx.astype(np.int32)}
    if "label" in b:
        out["label"] = b["label"].astype(np.int32)
    return out


def example_inputs(setup: Setup):
    """Zeros shaped like one view of one example (only shapes matter to ``init``; no view is computed)."""
    c = setup.config
    x = jnp.asarray(setup.train.take(np.arange(1))["x"])
    view = jax.eval_shape(lambda k, x: data.two_views(k, x, c.data.view, **c.data.view_kwargs.to_dict())[0],
                          jax.random.key(0), x)
    return jnp.zeros(view.shape, view.dtype), None


def consts(setup: Setup) -> dict:
    """With a bank and labels: the training labels by example id (the bank's class diagnostic)."""
    if _bank(setup.config) and "label" in setup.train.arrays:
        return {"labels": jnp.asarray(setup.train.arrays["label"], jnp.int32)}
    return {}


def init_state(setup: Setup, params, key) -> dict:
    """The running centre; the memory bank (empty: it counts as negatives once full, see :func:`_negatives`);
    MoCo's key encoder (a copy of the query tower) and queue (random unit keys); the instance memory."""
    c = setup.config
    out = {}
    if c.model.centre == "running":
        out["centre"] = _first_centre(setup, params)
    bank = _bank(c)
    if bank == "memory":
        out["memory"] = samplers.queue_init(c.negatives.memory, _dim(setup, params))._asdict()
    elif bank == "instance":
        out["instance"] = samplers.instance_init(len(setup.train), _dim(setup, params),
                                                 key=jax.random.fold_in(key, 7))._asdict()
    if c.moco.enabled:
        out["key_params"] = jax.tree.map(jnp.array, params["query"])
        if c.moco.queue_size:
            out["queue"] = samplers.queue_init(c.moco.queue_size, _dim(setup, params),
                                               key=jax.random.fold_in(key, 7))._asdict()
    return out


def _first_centre(setup: Setup, params):
    """The running centre's start: the mean embedding of the first global batch (its examples as they
    are, the identity view) under the initial parameters, so the first step is centred too."""
    c = setup.config
    idx = data.batch_indices(c.seed, 0, len(setup.train), c.batch_size)
    x = jnp.asarray(setup.train.take(idx)["x"])
    view = jax.vmap(data.identity_view, (None, 0))(jax.random.key(0), x)
    return jnp.mean(common.apply_fn(setup.query_model)(params["query"], view)[1].astype(jnp.float32), 0)


def _dim(setup: Setup, params) -> int:
    x, _ = example_inputs(setup)
    return jax.eval_shape(setup.query_model.apply, params["query"], x)[1].shape[-1]


def make_encode(setup: Setup):
    """``encode(enc_params, (a, b, None), key) -> (z_a, z_b, None)``: both views through the query tower,
    except where ``b`` already holds the keys (MoCo's key encoder without ``symmetric``, the instance memory's
    slots)."""
    keys_given = _keys_given(setup.config)

    def encode(enc, inputs, key):
        a, b, _ = inputs
        k = jax.random.split(key, 3)  # (as the pairs task: the third would encode negatives)
        za = embed(setup.query_model, enc["query"], a, k[0])
        zb = b if keys_given else embed(setup.query_model, enc["query"], b, k[1])
        return za, zb, None

    return encode


def centred(config, z, state, *, trained: bool = True):
    r"""``z - c``: the embeddings the loss sees (inside ``shard_map``), by ``config.model.centre``.

    * ``running``: ``c`` is the state's centre, an exponential moving average of the global batch
      means of the view-1 embeddings (updated after each step, :func:`after_step`; DINO's centring,
      Caron et al. 2021). A constant within the step, so every encoder stays a per-example function:
      exact under gradient caching and any sharding.
    * ``batch``: ``c`` is the global batch's own mean of ``z`` (every device's rows), differentiated
      through when ``trained`` (the mean part of BatchNorm over the global batch); exact across
      devices and under gradient caching, which both see the whole batch's embeddings.
    * ``none``: ``c = 0``.

    Under the batch centre no output depends on a constant added to every embedding, so the projection
    head leaves its output bias out (``Task.output_bias``): its gradient would be zero up to rounding,
    which Adam turns into steps of their own.

    Without centring, embeddings of LayerNorm encoders share one direction at initialisation (the
    mean of the normalised embeddings has length ~0.96 on MNIST-1D), and negatives that take no
    gradient (a memory bank, MoCo's queue) drive that shared direction to a collapse where every
    logit is equal (``embedding_mean_norm`` -> 1).
    """
    mode = config.model.centre
    if mode == "running":
        return z - state["centre"].astype(z.dtype)
    if mode == "batch":
        mean = jax.lax.pmean(jnp.mean(z.astype(jnp.float32), 0), AXIS)
        return z - (mean if trained else jax.lax.stop_gradient(mean)).astype(z.dtype)
    return z


def make_objective(setup: Setup):
    """``objective(reps, lp, extra, hp) -> loss``: the registered loss (:func:`common.make_objective`) of the
    centred embeddings (:func:`centred`). With ``moco.symmetric`` the sum over both directions, each view's
    queries against the other view's keys (``extra["keys"]``: view 2's, ``extra["keys_2"]``: view 1's), as
    the MoCo CIFAR demo sums them. With the instance memory, plus ``proximal * mean |f - v|^2`` (f the
    normalised anchors, v their slots before the update; Wu et al. 2018, Section 3.4)."""
    c = setup.config
    loss = common.make_objective(setup)
    given = _keys_given(c)

    def objective(reps, lp, extra, hp):
        a, b, neg = reps
        state = extra.get("state", {})
        a = centred(c, a, state)
        if not given:
            b = centred(c, b, state)
        if c.moco.enabled and c.moco.symmetric:
            return loss((a, extra["keys"], neg), lp, extra, hp) + loss((b, extra["keys_2"], neg), lp, extra, hp)
        value = loss((a, b, neg), lp, extra, hp)
        if c.negatives.instance:
            gap = jnp.sum(jnp.square(l2_normalize(a).astype(jnp.float32) - b.astype(jnp.float32)), -1)
            value = value + hp["proximal"] * jax.lax.pmean(jnp.mean(gap), AXIS)
        return value

    return objective


def inputs(setup: Setup, keys, state, batch, consts, hp) -> common.StepInputs:
    """One member's step inputs (inside ``shard_map``); ``keys = (views, negatives)``.

    MoCo: the key encoder's centred keys of view 2 (and of view 1 with ``symmetric``), no gradient. The
    instance memory: view 2 is not drawn; the anchors' own slots are their keys (positives)."""
    c = setup.config
    k_view, k_key = keys
    a, b = data.two_views(k_view, batch["x"], c.data.view, **c.data.view_kwargs.to_dict())
    extra = {"ids": batch["id"], "state": {k: state[k] for k in ("centre",) if k in state}}
    if "label" in batch:
        extra["labels"] = batch["label"]
    fixed = None
    if c.moco.enabled:
        def key_of(view, k):
            z = embed(setup.query_model, state["key_params"], view, k)
            return jax.lax.stop_gradient(centred(c, z, state, trained=False))

        extra["keys"] = key_of(b, jax.random.fold_in(k_key, 1))
        if c.moco.symmetric:
            extra["keys_2"] = key_of(a, jax.random.fold_in(k_key, 2))
        else:
            b = extra["keys"]
    if c.negatives.instance:
        b = jax.lax.stop_gradient(state["instance"]["keys"][batch["id"]])
    if _diagnosed(c):
        fixed, more = _negatives(c, k_key, state, batch, consts, hp)
        extra.update(more)
    return common.StepInputs((a, b, None), extra, None, fixed)


def _negatives(c, key, state, batch, consts, hp):
    """``(bank share, extra)``: the negatives of this device's anchors (inside ``shard_map``).

    Candidates: every gathered in-batch column but the anchor itself and its positive (none with
    :func:`_queue_only`: MoCo v1/v2 and the instance memory contrast the positive with the bank
    alone, and the other in-batch columns are masked), and, with a bank (the memory, the MoCo
    queue or the instance memory, replicated on every device), every filled slot but those
    holding an earlier embedding of the anchor's own example (a stale copy of its positive; the
    instance memory: its own slot, which is its positive). Each device passes a contiguous ``1/W``
    share of the bank's slots, so the gathered columns hold each slot once. A memory bank counts
    only once full. With
    ``negatives.subsample = n`` all but ``n`` random candidates are dropped
    (:func:`jaxneg.samplers.subsample`: a fresh subset per anchor and step, drawn from the
    in-batch columns and the bank alike). The mask's columns follow the loss' gathered layout,
    ``W`` blocks of (in-batch columns, bank share). Diagnostics (``extra["diagnostics"]``): the
    fraction of the kept negatives of the anchor's class (labels only counted), and the bank's
    fill fraction and mean key age in steps.
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
    if _queue_only(c):
        cand = jnp.zeros((rows, w, rows), bool)
        never = (col[None, :] != pos[:, None]).reshape(rows, w, rows)
    else:
        cand = ((col[None, :] != own[:, None]) & (col[None, :] != pos[:, None])).reshape(rows, w, rows)
    labels = batch.get("label")
    col_lab = row_lab = None
    if labels is not None:
        row_lab = jnp.tile(labels, v)
        col_lab = jnp.broadcast_to(parallel.gather_replicated(labels, AXIS).reshape(w, 1, b), (w, v, b)).reshape(w, rows)
    extra, diag, fixed, mine = {}, {}, None, None
    name = _bank(c)
    if name is not None:
        bank = samplers.Queue(**state[name])
        size = hp["memory_size"] if name == "memory" else hp["queue_size"] if name == "queue" else bank.keys.shape[0]
        valid = bank.mask & (bank.count >= size) & (batch["step"] >= hp["memory_from"]) if name == "memory" \
            else bank.mask
        s = bank.keys.shape[0]
        per = -(-s // w)
        pad = lambda x, value=0: jnp.pad(x, [(0, per * w - s)] + [(0, 0)] * (x.ndim - 1), constant_values=value)
        fixed = jax.lax.dynamic_slice_in_dim(pad(bank.keys), d * per, per)
        extra["negatives_mask"] = jax.lax.dynamic_slice_in_dim(pad(valid), d * per, per)
        mine = pad(bank.excludes(jnp.tile(ids, v)).T).T.reshape(rows, w, per)
        cand = jnp.concatenate([cand, (pad(valid).reshape(1, w, per) & ~mine)], axis=2)
        stats = samplers.queue_stats(bank, batch["step"], size=size)
        diag["bank_fill"], diag["bank_age"] = stats["fill"], stats["age"]
        if labels is not None:
            bank_lab = jnp.where(bank.ids >= 0, consts["labels"][jnp.maximum(bank.ids, 0)], -1)
            col_lab = jnp.concatenate([col_lab, pad(bank_lab, -1).reshape(w, per)], axis=1)
        mine = jnp.concatenate([jnp.zeros((rows, w, rows), bool), mine], axis=2).reshape(rows, -1)
        if never is not None:
            never = jnp.concatenate([never, jnp.zeros((rows, w, per), bool)], axis=2)
    cand = cand.reshape(rows, -1)
    keep = samplers.subsample(key, cand, hp["subsample"]) if c.negatives.subsample else cand
    drop = cand & ~keep
    extra["mask"] = drop if mine is None else drop | mine
    if never is not None:
        extra["mask"] = extra["mask"] | never.reshape(rows, -1)
    if labels is not None:
        same = (keep & (row_lab[:, None] == col_lab.reshape(1, -1))).sum()
        diag["negatives_same_class"] = jax.lax.psum(same, AXIS) / jnp.maximum(jax.lax.psum(keep.sum(), AXIS), 1)
    extra["diagnostics"] = diag
    return fixed, extra


def after_step(setup: Setup, state, params, extra, hp) -> dict:
    """State updates after the optimizer step (inside ``shard_map``), in this order: the step's centred
    view-1 embeddings (computed before this update) go into the memory bank (pushed, FIFO) or the instance
    memory (written in place, :func:`jaxneg.samplers.instance_update`); MoCo's centred keys go into the
    queue (view 1's then view 2's with ``symmetric``, as the MoCo demo's ``cat([k1, k2])``, device by
    device), and the key encoder moves towards the updated query encoder, ``theta_k <- m theta_k + (1 - m)
    theta_q``; last, the running centre moves towards the global batch mean of the step's view-1
    embeddings, ``c <- m c + (1 - m) mean``. Every push uses the centre the step used."""
    c = setup.config
    state = dict(state)
    gather = lambda x: parallel.gather_replicated(x, AXIS)  # noqa: E731  (device order = global batch order)
    bank = _bank(c)
    if bank in ("memory", "instance"):
        z = gather(jax.lax.stop_gradient(centred(c, extra["embeddings"], state, trained=False)))
        ids = gather(extra["ids"])
        if bank == "memory":
            state["memory"] = samplers.queue_push(samplers.Queue(**state["memory"]), z, size=hp["memory_size"],
                                                  ids=ids, step=extra["step"])._asdict()
        else:
            state["instance"] = samplers.instance_update(samplers.Queue(**state["instance"]), ids, z,
                                                         momentum=hp["instance_momentum"], step=extra["step"])._asdict()
    if c.moco.enabled:
        if bank == "queue":
            keys, ids = extra["keys"], extra["ids"]
            if c.moco.symmetric:
                keys, ids = jnp.concatenate([extra["keys_2"], keys]), jnp.concatenate([ids, ids])
            state["queue"] = samplers.queue_push(samplers.Queue(**state["queue"]), gather(keys), size=hp["queue_size"],
                                                 ids=gather(ids), step=extra["step"])._asdict()
        m = hp["moco_momentum"]
        state["key_params"] = jax.tree.map(lambda k, q: m * k + (1.0 - m) * q, state["key_params"], params["query"])
    if c.model.centre == "running":
        mean = jax.lax.pmean(jnp.mean(jax.lax.stop_gradient(extra["embeddings"]).astype(jnp.float32), 0), AXIS)
        m = hp["centre_momentum"]
        state["centre"] = m * state["centre"] + (1.0 - m) * mean
    return state


def diagnose(setup: Setup, state, extra, hp) -> dict:
    r"""Collapse diagnostics of the step (inside ``shard_map``; the state before the update):

    * ``embedding_mean_norm`` ``= |mean_i z_i / |z_i||`` over the global batch of the centred view-1
      embeddings (what the loss saw): about 0 for embeddings spread over the sphere, 1 when every
      embedding points one way (then every logit is equal and the loss is ``log(n + 1)``);
    * with a bank, ``bank_drift``: the cosine between that mean direction and the mean of the bank's
      normalised keys (its filled slots): near 1 while the batch and the bank share a direction.
    """
    c = setup.config
    z = jax.lax.stop_gradient(centred(c, extra["embeddings"], state, trained=False))
    mean = common.mean_direction(z)
    out = {"embedding_mean_norm": jnp.linalg.norm(mean)}
    name = _bank(c)
    if name is not None:
        bank = samplers.Queue(**state[name])
        keys = jnp.where(bank.mask[:, None], l2_normalize(bank.keys.astype(jnp.float32)), 0.0)
        bank_mean = jnp.sum(keys, 0) / jnp.maximum(jnp.sum(bank.mask), 1)
        out["bank_drift"] = jnp.dot(mean, bank_mean) / jnp.maximum(jnp.linalg.norm(mean) * jnp.linalg.norm(bank_mean),
                                                                   1e-12)
    return out


def evaluate(setup: Setup, params) -> dict:
    """kNN / linear-probe accuracy, tolerance and RankMe on frozen features, and view-pair metrics
    (:func:`evaluate_members` of this one member)."""
    stacked = jax.tree.map(lambda x: jnp.asarray(x)[None], params)
    return evaluate_members(setup, stacked, [setup.config.seed])[0]


def evaluate_members(setup: Setup, params, seeds) -> list[dict]:
    """:func:`evaluate` of ``M`` members at once: ``params`` stacked ``[M, ...]``, ``seeds [M]`` (each
    member's evaluation key, :func:`~experiments.tasks.common.eval_key`), equal to evaluating each
    member alone. Every stage is one compiled call vmapped over the members: the views, the encodings
    (the only stage compiled per model), the metrics, and the classification (kNN and linear probe) of
    the features, the last two shared by every encoder with the same feature shapes."""
    c, ev = setup.config, setup.config.eval
    test = first_rows(setup.test, ev.max_examples)
    train = first_rows(setup.eval_train, ev.max_examples)
    views = _views_fn(c.data.view, tuple(sorted(c.data.view_kwargs.to_dict().items())))
    keys = jnp.stack([eval_key(setup, seed) for seed in seeds])
    p = params["query"]
    identity, v1, v2 = views(keys, jnp.asarray(test["x"]))
    # the embeddings as the loss saw them: with a centre, minus the evaluated set's own mean (the global batch
    # mean's counterpart; the running centre tracks that mean). The backbone features h are never centred.
    centre = (lambda z: z - jnp.mean(z, 1, keepdims=True)) if c.model.centre != "none" else (lambda z: z)  # noqa: E731
    h_te, z_te = _encode_members(setup.query_model, p, identity)
    z_te = centre(z_te)
    out = _metrics(keys, h_te, centre(_encode_members(setup.query_model, p, v1)[1]),
                   centre(_encode_members(setup.query_model, p, v2)[1]), min(int(ev.num_candidates), len(test["x"])))
    if "label" in train:
        h_tr, _ = _encode_members(setup.query_model, p, views(keys, jnp.asarray(train["x"]), False)[0])
        y_tr, y_te = jnp.asarray(train["label"]), jnp.asarray(test["label"])
        out["tolerance"] = _tolerance(z_te, y_te)
        out.update(evaluation.classification_hits_members(
            h_tr.astype(jnp.float32), y_tr, h_te.astype(jnp.float32), y_te, k=int(ev.knn_k),
            temperature=float(ev.knn_temperature), probe_steps=int(ev.probe_steps),
            num_classes=int(setup.test.num_classes or max(train["label"].max(), test["label"].max()) + 1)))
    out = jax.device_get(out)
    n = len(test["x"])
    return [{name: (int(v[i]) / n if name in HITS else float(v[i])) for name, v in out.items()}
            for i in range(len(seeds))]


HITS = ("knn_accuracy", "linear_probe_accuracy")


@functools.lru_cache(maxsize=16)
def _views_fn(view: str, kwargs_items: tuple):
    """``views(keys [M], x [N, ...], random=True) -> (identity, v1, v2)``, each ``[M, N, ...]``: the identity
    view and two random views of every row under each member's key (``random=False``: the identity only)."""
    kwargs = dict(kwargs_items)
    identity = jax.jit(jax.vmap(jax.vmap(data.identity_view, (None, 0)), (0, None)))
    pair = jax.jit(jax.vmap(lambda k, x: data.two_views(k, x, view, **kwargs), (0, None)))

    def views(keys, x, random=True):
        return (identity(keys, x), *(pair(keys, x) if random else (None, None)))

    return views


def _encode_members(model, params, x, chunk=1024):
    """``(features, embeddings)`` ``[M, N, ...]`` of each member's rows ``x [M, N, ...]``, in chunks."""
    f = _vmapped_apply(model)
    outs = [f(params, x[:, i:i + chunk]) for i in range(0, x.shape[1], chunk)]
    return jnp.concatenate([o[0] for o in outs], 1), jnp.concatenate([o[1] for o in outs], 1)


@functools.lru_cache(maxsize=16)
def _vmapped_apply(model):
    return jax.jit(jax.vmap(model.apply))


@functools.partial(jax.jit, static_argnums=4)
def _metrics(keys, h, z1, z2, candidates):
    """RankMe of the features and the view-pair metrics, vmapped over members (shared by every encoder)."""
    def one(key, h, z1, z2):
        return {"rankme": evaluation.rankme(h), "alignment": evaluation.alignment(z1, z2),
                "uniformity": evaluation.uniformity(z1),
                "contrastive_accuracy": evaluation._contrastive_hits(key, z1, z2, candidates)}

    return jax.vmap(one)(keys, h, z1, z2)


_tolerance = jax.jit(jax.vmap(evaluation.tolerance, (0, None)))


def raw_input(setup: Setup) -> dict:
    """The evaluation's classification protocol on the raw inputs (the identity view, flattened)."""
    ev = setup.config.eval
    test = first_rows(setup.test, ev.max_examples)
    train = first_rows(setup.eval_train, ev.max_examples)
    if "label" not in train:
        return {}
    identity = jax.vmap(data.identity_view, (None, 0))
    view = lambda x: np.asarray(identity(eval_key(setup), jnp.asarray(x)), np.float32)  # noqa: E731
    return evaluation.classification(view(train["x"]), train["label"], view(test["x"]), test["label"],
                                     k=ev.knn_k, temperature=ev.knn_temperature, probe_steps=ev.probe_steps,
                                     num_classes=setup.test.num_classes)


TASK = common.register(common.Task(
    name="views", needs=needs, corpus_id=None, validate=validate, host_batch=host_batch,
    example_inputs=example_inputs, consts=consts, init_state=init_state, make_encode=make_encode,
    make_objective=make_objective, inputs=inputs, after_step=after_step, evaluate=evaluate, raw_input=raw_input,
    evaluate_members=evaluate_members, diagnose=diagnose,
    output_bias=lambda config: config.model.centre != "batch"))  # the batch centre removes any constant
