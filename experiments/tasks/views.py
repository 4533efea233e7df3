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
        if 0 < config.moco.queue_size < config.batch_size:
            raise ValueError(f"config.moco.queue_size={config.moco.queue_size} must be 0 or >= config.batch_size="
                             f"{config.batch_size} (each step pushes the batch's keys)")
        if loss.inputs != "pair":
            raise ValueError(f"config.moco needs a loss of (query, key) pairs; {config.loss.name!r} takes "
                             f"{loss.inputs} inputs; valid: {', '.join(LOSSES.select(inputs=('pair',)))}")
        if config.moco.queue_size and not loss.extra_negatives:
            raise ValueError(f"config.moco.queue_size needs a loss that takes extra negatives; "
                             f"{config.loss.name!r} does not; valid: "
                             f"{', '.join(LOSSES.select(extra_negatives=True, inputs=('pair',)))}")
    if config.sampler.name:
        raise ValueError(f"config.sampler.name={config.sampler.name!r} draws documents: it needs task='pairs'")
    _validate_negatives(config, loss)


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
    if m and config.gradcache_chunk:
        raise ValueError("config.negatives.memory keeps the step's embeddings, which gradient caching does not "
                         "return: set config.gradcache_chunk=0")


def _bank_size(config) -> int:
    return config.negatives.memory or config.moco.queue_size


def _diagnosed(config) -> bool:
    """Whether the step reports its negatives (class overlap; the bank's fill and age)."""
    return bool(config.negatives.subsample or _bank_size(config))


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
    if _bank_size(setup.config) and "label" in setup.train.arrays:
        return {"labels": jnp.asarray(setup.train.arrays["label"], jnp.int32)}
    return {}


def init_state(setup: Setup, params, key) -> dict:
    """MoCo: the key encoder's parameters (a copy of the query tower) and the queue."""
    c = setup.config
    if c.negatives.memory:  # empty: it counts as negatives once full (see _negatives)
        return {"memory": samplers.queue_init(c.negatives.memory, _dim(setup, params))._asdict()}
    if not c.moco.enabled:
        return {}
    out = {"key_params": jax.tree.map(jnp.array, params["query"])}
    if c.moco.queue_size:
        out["queue"] = samplers.queue_init(c.moco.queue_size, _dim(setup, params), key=jax.random.fold_in(key, 7))._asdict()
    return out


def _dim(setup: Setup, params) -> int:
    x, _ = example_inputs(setup)
    return jax.eval_shape(setup.query_model.apply, params["query"], x)[1].shape[-1]


def make_encode(setup: Setup):
    """``encode(enc_params, (a, b, None), key) -> (z_a, z_b, None)``: both views through the query tower,
    except with a MoCo key encoder, where ``b`` already holds the key encoder's embeddings."""
    keys_given = setup.config.moco.enabled

    def encode(enc, inputs, key):
        a, b, _ = inputs
        k = jax.random.split(key, 3)  # (as the pairs task: the third would encode negatives)
        za = embed(setup.query_model, enc["query"], a, k[0])
        zb = b if keys_given else embed(setup.query_model, enc["query"], b, k[1])
        return za, zb, None

    return encode


make_objective = common.make_objective


def inputs(setup: Setup, keys, state, batch, consts, hp) -> common.StepInputs:
    """One member's step inputs (inside ``shard_map``); ``keys = (views, negatives)``."""
    c = setup.config
    k_view, k_key = keys
    a, b = data.two_views(k_view, batch["x"], c.data.view, **c.data.view_kwargs.to_dict())
    extra = {"ids": batch["id"]}
    if "label" in batch:
        extra["labels"] = batch["label"]
    fixed = None
    if c.moco.enabled:
        b = jax.lax.stop_gradient(embed(setup.query_model, state["key_params"], b, k_key))
        extra["keys"] = b
    if _diagnosed(c):
        fixed, more = _negatives(c, k_key, state, batch, consts, hp)
        extra.update(more)
    return common.StepInputs((a, b, None), extra, None, fixed)


def _negatives(c, key, state, batch, consts, hp):
    """``(bank share, extra)``: the negatives of this device's anchors (inside ``shard_map``).

    Candidates: every gathered in-batch column but the anchor itself and its positive, and,
    with a bank (the memory or the MoCo queue, replicated on every device), every filled slot
    but those holding an earlier embedding of the anchor's own example (a stale copy of its
    positive). Each device passes a contiguous ``1/W`` share of the bank's slots, so the
    gathered columns hold each slot once. A memory bank counts only once full. With
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
    cand = ((col[None, :] != own[:, None]) & (col[None, :] != pos[:, None])).reshape(rows, w, rows)
    labels = batch.get("label")
    col_lab = row_lab = None
    if labels is not None:
        row_lab = jnp.tile(labels, v)
        col_lab = jnp.broadcast_to(parallel.gather_replicated(labels, AXIS).reshape(w, 1, b), (w, v, b)).reshape(w, rows)
    extra, diag, fixed, mine = {}, {}, None, None
    name = "memory" if c.negatives.memory else "queue" if c.moco.queue_size else None
    if name is not None:
        bank = samplers.Queue(**state[name])
        size = hp["memory_size"] if name == "memory" else hp["queue_size"]
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
    cand = cand.reshape(rows, -1)
    keep = samplers.subsample(key, cand, hp["subsample"]) if c.negatives.subsample else cand
    drop = cand & ~keep
    extra["mask"] = drop if mine is None else drop | mine
    if labels is not None:
        same = (keep & (row_lab[:, None] == col_lab.reshape(1, -1))).sum()
        diag["negatives_same_class"] = jax.lax.psum(same, AXIS) / jnp.maximum(jax.lax.psum(keep.sum(), AXIS), 1)
    extra["diagnostics"] = diag
    return fixed, extra


def after_step(setup: Setup, state, params, extra, hp) -> dict:
    """MoCo: push the global batch's keys into the queue, then move the key encoder towards the query encoder."""
    c = setup.config
    if c.negatives.memory:  # the step's own view-1 embeddings, computed before this update
        state = dict(state)
        z = parallel.gather_replicated(jax.lax.stop_gradient(extra["embeddings"]), AXIS)
        ids = parallel.gather_replicated(extra["ids"], AXIS)
        state["memory"] = samplers.queue_push(samplers.Queue(**state["memory"]), z, size=hp["memory_size"], ids=ids,
                                              step=extra["step"])._asdict()
        return state
    if not c.moco.enabled:
        return state
    state = dict(state)
    if "queue" in state:
        keys = parallel.gather_replicated(extra["keys"], AXIS)  # device order = global batch order
        ids = parallel.gather_replicated(extra["ids"], AXIS)
        state["queue"] = samplers.queue_push(samplers.Queue(**state["queue"]), keys, size=hp["queue_size"], ids=ids,
                                             step=extra["step"])._asdict()
    m = hp["moco_momentum"]
    state["key_params"] = jax.tree.map(lambda k, q: m * k + (1.0 - m) * q, state["key_params"], params["query"])
    return state


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
    h_te, z_te = _encode_members(setup.query_model, p, identity)
    out = _metrics(keys, h_te, _encode_members(setup.query_model, p, v1)[1],
                   _encode_members(setup.query_model, p, v2)[1], min(int(ev.num_candidates), len(test["x"])))
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
    evaluate_members=evaluate_members))
