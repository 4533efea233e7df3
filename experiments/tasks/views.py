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
and the share of negatives of the anchor's class (:func:`negatives.candidates`).

References:
  Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations*, ICML 2020.
  He et al., *Momentum Contrast for Unsupervised Visual Representation Learning*, CVPR 2020.
  Wang et al., *Cross-Batch Memory for Embedding Learning*, CVPR 2020.
  Wu et al., *Unsupervised Feature Learning via Non-Parametric Instance Discrimination*, CVPR 2018.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import checks
from experiments.tasks import common
from experiments.tasks import negatives, sources, view_eval
from experiments.tasks.common import AXIS, Setup, embed, process_batch
from jaxneg import LOSSES, data, parallel
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
    if loss.inputs == "sampled":
        raise ValueError(f"config.loss.name={config.loss.name!r} needs sampled negatives, which task='pairs' draws "
                         f"(config.sampler)")
    checks.choice("model.centre", config.model.centre, CENTRES)
    if not 0.0 <= config.model.centre_momentum < 1.0:
        raise ValueError(f"config.model.centre_momentum must be in [0, 1), got {config.model.centre_momentum}")
    splits = config.model.norm_splits
    if not isinstance(splits, int) or splits < 1 or config.batch_size % splits:
        raise ValueError(f"config.model.norm_splits must be an integer >= 1 that divides batch_size="
                         f"{config.batch_size}, got {splits!r}")
    if splits > 1 and config.model.centre != "batch_norm":
        raise ValueError(f"config.model.norm_splits={splits} needs model.centre='batch_norm' (the splits are its "
                         f"statistics' groups), got model.centre={config.model.centre!r}")
    negatives.validate(config, loss)


#: ``config.model.centre``: what is subtracted from the embeddings before the loss normalises them
#: (``batch_norm`` also divides by the batch's standard deviation)
CENTRES = ("none", "batch", "running", "batch_norm")
NORM_EPS = view_eval.NORM_EPS


def _pushed(config) -> int:
    """Keys a MoCo step pushes into its queue: the batch's, of both views when symmetric."""
    return config.batch_size * (2 if config.moco.symmetric else 1)


def needs(config) -> tuple:
    """The dataset fields it reads: ``x``, and ``label`` for a supervised loss or the negatives'
    diagnostics (labels are then only counted, never trained on)."""
    return ("x", "label") if config.loss.supervised or negatives.diagnosed(config) else ("x",)


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
    if negatives.bank_of(setup.config) and "label" in setup.train.arrays:
        return {"labels": jnp.asarray(setup.train.arrays["label"], jnp.int32)}
    return {}


def init_state(setup: Setup, params, key) -> dict:
    """The running centre; the bank of the run's negative source (:class:`~experiments.tasks.sources.Bank`:
    the memory, empty; MoCo's queue, random unit keys; the instance memory); MoCo's key encoder (a copy of the
    query tower)."""
    c = setup.config
    out = {}
    if c.model.centre == "running":
        out["centre"] = _first_centre(setup, params)
    bank = negatives.bank_of(c)
    if bank is not None:
        out[bank.state] = bank.init(c, len(setup.train), _dim(setup, params), jax.random.fold_in(key, 7))
    if c.moco.enabled:
        out["key_params"] = jax.tree.map(jnp.array, params["query"])
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
    keys_given = negatives.keys_given(setup.config)

    def encode(enc, inputs, key):
        a, b, _ = inputs
        k = jax.random.split(key, 3)  # (as the pairs task: the third would encode negatives)
        za = embed(setup.query_model, enc["query"], a, k[0])
        zb = b if keys_given else embed(setup.query_model, enc["query"], b, k[1])
        return za, zb, None

    return encode


def centred(config, z, state, *, trained: bool = True, groups=None):
    r"""``z - c``: the embeddings the loss sees (inside ``shard_map``), by ``config.model.centre``.

    * ``running``: ``c`` is the state's centre, an exponential moving average of the global batch
      means of the view-1 embeddings (updated after each step, :func:`after_step`; DINO's centring,
      Caron et al. 2021). A constant within the step, so every encoder stays a per-example function:
      exact under gradient caching and any sharding.
    * ``batch``: ``c`` is the global batch's own mean of ``z`` (every device's rows), differentiated
      through when ``trained`` (the mean part of BatchNorm over the global batch); exact across
      devices and under gradient caching, which both see the whole batch's embeddings.
    * ``batch_norm``: BatchNorm without affine parameters on the head's output (as MoCo v3's and SimCLR
      v2's projectors end; Ioffe & Szegedy 2015): ``(z - mu_g) / sqrt(var_g + eps)`` per dimension, ``mu_g``
      and ``var_g`` (biased) the mean and variance of the rows of ``z``'s group ``g``, differentiated when
      ``trained``. With ``model.norm_splits = S`` the global batch is cut into ``S`` groups of consecutive
      rows (``groups``: each row's group, default those), SplitBatchNorm's ``S`` virtual devices; MoCo's
      keys get a random partition instead (:func:`inputs`), which equals shuffling the keys' inputs across
      the splits before the key encoder and back after (MoCo's ShuffleBN), since every encoder layer before
      this one is per-example. The statistics sum over every device's rows of a group (``psum``), so the
      result does not depend on the device count; what the per-example guarantee loses is the same as the
      batch centre's: each row depends on its group's statistics.
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
    if mode == "batch_norm":
        splits = config.model.norm_splits
        if groups is None:
            groups = split_groups(z.shape[0], splits)
        x = z.astype(jnp.float32)
        count = jax.lax.psum(jax.ops.segment_sum(jnp.ones_like(x[:, :1]), groups, splits), AXIS)
        group_mean = lambda v: (jax.lax.psum(jax.ops.segment_sum(v, groups, splits), AXIS) / count)[groups]  # noqa: E731
        mean = group_mean(x)
        var = group_mean(jnp.square(x - mean))
        stats = (mean, var) if trained else jax.lax.stop_gradient((mean, var))
        return ((x - stats[0]) * jax.lax.rsqrt(stats[1] + NORM_EPS)).astype(z.dtype)
    return z


def split_groups(rows: int, splits: int, key=None):
    """``[rows]`` int32 (inside ``shard_map``): the group of each of this device's rows when the global batch
    (every device's ``rows``, in device order) is cut into ``splits`` groups of equal size: consecutive rows,
    or with ``key`` (the same on every device) a uniformly random partition into such groups."""
    devices = jax.lax.axis_size(AXIS)
    total = rows * devices
    if total % splits:
        raise ValueError(f"model.norm_splits={splits} must divide the global batch of {total} rows")
    position = jax.lax.axis_index(AXIS) * rows + jnp.arange(rows)
    if key is not None:
        position = jax.random.permutation(key, total)[position]
    return (position // (total // splits)).astype(jnp.int32)


def make_objective(setup: Setup):
    """``objective(reps, lp, extra, hp) -> loss``: the registered loss (:func:`common.make_objective`) of the
    centred embeddings (:func:`centred`). With ``moco.symmetric`` the sum over both directions, each view's
    queries against the other view's keys (``extra.keys``: view 2's, ``extra.keys_2``: view 1's), as
    the MoCo CIFAR demo sums them. With the instance memory, plus ``proximal * mean |f - v|^2`` (f the
    normalised anchors, v their slots before the update; Wu et al. 2018, Section 3.4)."""
    c = setup.config
    loss = common.make_objective(setup)
    given = negatives.keys_given(c)

    def objective(reps, lp, extra, hp):
        a, b, neg = reps
        state = {} if extra.centre is None else {"centre": extra.centre}
        a = centred(c, a, state)
        if not given:
            b = centred(c, b, state)
        if c.moco.enabled and c.moco.symmetric:
            return loss((a, extra.keys, neg), lp, extra, hp) + loss((b, extra.keys_2, neg), lp, extra, hp)
        value = loss((a, b, neg), lp, extra, hp)
        if c.negatives.instance:
            gap = jnp.sum(jnp.square(l2_normalize(a).astype(jnp.float32) - b.astype(jnp.float32)), -1)
            value = value + hp.proximal * jax.lax.pmean(jnp.mean(gap), AXIS)
        return value

    return objective


def inputs(setup: Setup, keys, state, batch, consts, hp) -> common.StepInputs:
    """One member's step inputs (inside ``shard_map``); ``keys = (views, negatives)``.

    MoCo: the key encoder's centred keys of view 2 (and of view 1 with ``symmetric``), no gradient. The
    instance memory: view 2 is not drawn; the anchors' own slots are their keys (positives)."""
    c = setup.config
    k_view, k_key = keys
    a, b = data.two_views(k_view, batch["x"], c.data.view, **c.data.view_kwargs.to_dict())
    extra = common.StepData(ids=batch["id"], labels=batch.get("label"), centre=state.get("centre"))
    fixed = None
    if c.moco.enabled:
        def key_of(view, which):
            z = embed(setup.query_model, state["key_params"], view, jax.random.fold_in(k_key, which))
            groups = None
            if c.model.centre == "batch_norm" and c.model.norm_splits > 1:
                # ShuffleBN: the keys' own random partition, the same on every device (no device index in its key)
                shuffle = jax.random.fold_in(jax.random.key(hp.seed), batch["step"])
                groups = split_groups(z.shape[0], c.model.norm_splits, jax.random.fold_in(shuffle, which))
            return jax.lax.stop_gradient(centred(c, z, state, trained=False, groups=groups))

        extra = extra._replace(keys=key_of(b, 1), keys_2=key_of(a, 2) if c.moco.symmetric else None)
        if not c.moco.symmetric:
            b = extra.keys
    if c.negatives.instance:
        b = jax.lax.stop_gradient(state["instance"].keys[batch["id"]])
    if negatives.diagnosed(c):
        fixed, more = negatives.candidates(c, k_key, state, batch, consts, hp)
        extra = extra._replace(mask=more.mask, negatives_mask=more.negatives_mask, diagnostics=more.diagnostics,
                               row_labels=more.row_labels, column_labels=more.column_labels)
    return common.StepInputs((a, b, None), extra, None, fixed)


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
    bank = negatives.bank_of(c)
    if bank is not None and bank.holds == "embeddings":
        z = gather(jax.lax.stop_gradient(centred(c, extra.embeddings, state, trained=False)))
        state[bank.state] = bank.push(state[bank.state], sources.Pushed(z, gather(extra.ids), extra.step), hp)
    if c.moco.enabled:
        if bank is not None and bank.holds == "keys":
            keys, ids = extra.keys, extra.ids
            if c.moco.symmetric:
                keys, ids = jnp.concatenate([extra.keys_2, keys]), jnp.concatenate([ids, ids])
            state[bank.state] = bank.push(state[bank.state], sources.Pushed(gather(keys), gather(ids), extra.step), hp)
        m = hp.moco_momentum
        state["key_params"] = jax.tree.map(lambda k, q: m * k + (1.0 - m) * q, state["key_params"], params["query"])
    if c.model.centre == "running":
        mean = jax.lax.pmean(jnp.mean(jax.lax.stop_gradient(extra.embeddings).astype(jnp.float32), 0), AXIS)
        m = hp.centre_momentum
        state["centre"] = m * state["centre"] + (1.0 - m) * mean
    return state


def diagnose(setup: Setup, state, extra, hp) -> dict:
    r"""Collapse diagnostics of the step (inside ``shard_map``; the state before the update):

    * ``embedding_mean_norm`` ``= |mean_i z_i / |z_i||`` over the global batch of the centred view-1
      embeddings (what the loss saw): about 0 for embeddings spread over the sphere, 1 when every
      embedding points one way (then every logit is equal and the loss is ``log(n + 1)``);
    * with a bank, ``bank_drift``: the cosine between that mean direction and the mean of the bank's
      normalised keys (its filled slots): near 1 while the batch and the bank share a direction;
    * with a softmax loss over in-batch (and stored) negatives, the regime of the negatives
      (:func:`negative_regime`).
    """
    c = setup.config
    z = jax.lax.stop_gradient(centred(c, extra.embeddings, state, trained=False))
    mean = common.mean_direction(z)
    out = {"embedding_mean_norm": jnp.linalg.norm(mean)}
    if c.loss.name in negatives.NEGATIVES_LOSSES and extra.reps is not None:
        out.update(negative_regime(c, state, extra, hp))
    spec = negatives.bank_of(c)
    if spec is not None:
        bank = state[spec.state]
        keys = jnp.where(bank.mask[:, None], l2_normalize(bank.keys.astype(jnp.float32)), 0.0)
        bank_mean = jnp.sum(keys, 0) / jnp.maximum(jnp.sum(bank.mask), 1)
        out["bank_drift"] = jnp.dot(mean, bank_mean) / jnp.maximum(jnp.linalg.norm(mean) * jnp.linalg.norm(bank_mean),
                                                                   1e-12)
    return out


def negative_regime(c, state, extra, hp) -> dict:
    """How the softmax of the loss spreads over each anchor's negatives (:func:`common.negative_mass`, at the
    configured temperature), in the loss' gathered layout (``W`` blocks of this device's in-batch columns and
    its share of the bank, as :func:`negatives.candidates` builds the mask): ``effective_negatives``,
    ``negative_mass_stored`` (a bank's keys) and, with labels, ``negative_mass_same_class`` (the anchor's class,
    counted, never trained on). MoCo: view 1's queries against the keys of view 2."""
    v = negatives.NEGATIVES_LOSSES[c.loss.name]
    za, zb, fixed = extra.reps
    a = centred(c, za, state, trained=False)
    if extra.keys is not None:
        keys = extra.keys
    else:
        keys = zb if negatives.keys_given(c) else centred(c, zb, state, trained=False)
    rows = jnp.concatenate([a, keys]) if v == 2 else a
    per = 0 if fixed is None else fixed.shape[0]
    local = rows if v == 2 else keys
    block = local.shape[0] + per
    cols = jnp.concatenate([local, fixed.astype(local.dtype)]) if per else local
    cols = parallel.gather_replicated(cols, AXIS)  # [W * block, D], device by device
    logits = (l2_normalize(rows.astype(jnp.float32)) @ l2_normalize(cols.astype(jnp.float32)).T) / hp.temperature
    n_rows, b = rows.shape[0], za.shape[0]
    r = jnp.arange(n_rows)
    d = jax.lax.axis_index(AXIS)
    own = d * block + r
    pos = d * block + (r + b) % n_rows if v == 2 else own
    col = jnp.arange(cols.shape[0])
    stored = (col % block >= local.shape[0])[None, :]
    cand = (col[None, :] != own[:, None]) & (col[None, :] != pos[:, None])
    if extra.mask is not None:
        cand = cand & ~extra.mask
    if per:
        valid = extra.negatives_mask if extra.negatives_mask is not None else jnp.ones((per,), bool)
        slot_ok = parallel.gather_replicated(valid, AXIS).reshape(-1, per)  # [W, per]
        ok = jnp.concatenate([jnp.ones((slot_ok.shape[0], local.shape[0]), bool), slot_ok], 1).reshape(-1)
        cand = cand & ok[None, :]
    groups = {"stored": jnp.broadcast_to(stored, cand.shape)} if per else {}
    if extra.row_labels is not None and extra.column_labels is not None:
        groups["same_class"] = (extra.row_labels[:, None] == extra.column_labels[None, :]) & (extra.column_labels >= 0)
    return common.negative_mass(logits, cand, groups)


#: the views task's own config fields (``config_lib.base_config`` adds them), with their defaults
CONFIG = {
    "data.view": "signal",           # a name of jaxneg.data.VIEWS
    "data.view_kwargs": {},          # the view's keyword arguments
    # what is subtracted from the embeddings before the loss normalises them: "batch" (the global batch's own
    # mean, differentiated: exact under sharding and gradient caching), "running" (an EMA of the global batch
    # means, a constant within a step), "batch_norm" (BatchNorm without affine on the head's output) or "none"
    # (BENCHMARKS.md: "Negatives beyond the batch")
    "model.centre": "batch",
    "model.centre_momentum": 0.9,    # running centre: c <- m c + (1 - m) mean(batch embeddings)
    "model.norm_splits": 1,          # batch_norm: statistics over this many groups of the global batch
                                     # (SplitBatchNorm; MoCo's keys get a random partition: ShuffleBN)
    # MoCo (He et al. 2020): keys from a momentum (EMA) copy of the encoder, without gradient; its queue is the
    # `queue` negative source (experiments/tasks/sources/queue.py)
    "moco.enabled": False,
    "moco.momentum": 0.99,           # m of theta_k <- m theta_k + (1 - m) theta_q (0: a copy of the encoder)
    "moco.symmetric": False,         # both views act as queries against the other view's keys (loss summed over
                                     # the two directions; 2B keys pushed per step): the MoCo CIFAR demo, MoCo v3
    "moco.batch_negatives": False,   # the batch's other keys are negatives too (MoCo v1/v2: queue only)
    # the negatives each anchor sees: the registered sources (experiments.tasks.sources) add their own fields
}
MEMBERS = (  # (each negative source adds its own: experiments.tasks.sources)
    common.MemberField("moco.momentum", "moco_momentum"),
    common.MemberField("model.centre_momentum", "centre_momentum"),
)


def shape_key(config) -> dict:
    """The negative source and whether it subsamples (the sizes of subsets and banks are traced)."""
    return {"negatives.source": sources.of(config).name, "negatives.subsampled": bool(config.negatives.subsample)}


TASK = common.register(common.Task(
    name="views", needs=needs, corpus_id=None, validate=validate, host_batch=host_batch,
    example_inputs=example_inputs, consts=consts, init_state=init_state, make_encode=make_encode,
    make_objective=make_objective, inputs=inputs, after_step=after_step, evaluate=view_eval.evaluate, raw_input=view_eval.raw_input,
    evaluate_members=view_eval.evaluate_members, diagnose=diagnose,
    output_bias=lambda config: config.model.centre not in ("batch", "batch_norm"),  # they remove any constant
    config=CONFIG, members=MEMBERS, shape_key=shape_key))
