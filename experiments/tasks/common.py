"""What every task shares: the run's :class:`Setup`, models, parameters, encoding and the loss call.

The parameter tree of a run is ``{"query": ..., "doc": ... (a second tower), "logit": ...
(learned temperature / SigLIP scale and bias)}``; :func:`encoder_params` and
:func:`doc_tower` are the one place that knows it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import config_lib
from jaxneg import LOSSES, data, models, parallel
from jaxneg import evaluation

AXIS = parallel.DATA
LOGIT = "logit"  # the parameter-tree key of the learned logit scale (and SigLIP bias)


@dataclasses.dataclass
class Setup:
    """What a run builds from its config before the first step (data in host memory, models)."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    train: data.Data
    test: data.Data
    corpus: data.Data | None
    eval_train: data.Data             # what kNN and the linear probe fit on
    query_model: models.Encoder
    doc_model: models.Encoder | None   # None: the query model encodes documents too
    doc_by_id: bool                    # documents are item ids (id_embedding), not tokens

    def member(self, config: ml_collections.ConfigDict) -> "Setup":
        """The same data and models under another member's config (seed, hyperparameters)."""
        return dataclasses.replace(self, config=config)


def encoder_params(params: dict) -> dict:
    """The towers' parameters (everything but the logit parameters)."""
    return {k: v for k, v in params.items() if k != LOGIT}


def doc_tower(setup: Setup, enc: dict):
    """``(model, params)`` that encode documents: the second tower, else the query tower."""
    if "doc" in enc:
        return setup.doc_model, enc["doc"]
    return setup.query_model, enc["query"]


def _encoder(name, kwargs, config, corpus):
    kwargs = dict(kwargs)
    if name in ("bag_of_tokens",) and "vocab_size" not in kwargs:
        kwargs["vocab_size"] = int(max(corpus.arrays["tokens"].max(), 1)) + 1 if corpus else 2048
    if name == "id_embedding" and "num_items" not in kwargs:
        kwargs["num_items"] = len(corpus)
    head = models.ProjectionHead(config.model.embed_dim, tuple(config.model.head_hidden)) if config.model.embed_dim else None
    return models.build(name, head, **kwargs)


def build(config: ml_collections.ConfigDict) -> Setup:
    """Validate ``config``, load the data and build the models (no compilation yet)."""
    from experiments import tasks

    devices = jax.devices()
    if config.num_devices > len(devices):
        raise ValueError(f"config.num_devices={config.num_devices} but only {len(devices)} devices exist")
    mesh = parallel.data_mesh(AXIS, devices[: config.num_devices or None])
    config_lib.validate(config, mesh.size)
    task = tasks.get(config.task)
    d = config.data
    kw = dict(data_dir=d.data_dir or None, config=d.config.to_dict())
    train = data.load(d.name, d.train_split, max_examples=d.max_train_examples or None, **kw)
    test = data.load(d.name, d.test_split, **kw)
    corpus = data.load(d.name, d.corpus_split, **kw) if task.USES_CORPUS else None
    eval_train = data.load(d.name, d.eval_train_split, max_examples=config.eval.max_examples, **kw) \
        if d.eval_train_split and d.eval_train_split != d.train_split else train
    for split in (train, test):
        if not set(task.NEEDS) <= set(split.arrays):
            raise ValueError(f"config.task={config.task!r} needs fields {sorted(task.NEEDS)} in dataset {d.name!r} "
                             f"split {split.split!r}, which has {sorted(split.arrays)}")
    if config.loss.supervised and "label" not in train.arrays and config.task == "views":
        raise ValueError(f"config.loss.supervised needs a 'label' field in dataset {d.name!r}")
    q = _encoder(config.model.name, config.model.kwargs, config, corpus)
    doc = _encoder(config.model.doc_name, config.model.doc_kwargs, config, corpus) if config.model.doc_name else None
    return Setup(config, mesh, train, test, corpus, eval_train, q, doc, config.model.doc_name == "id_embedding")


def init_params(setup: Setup, key) -> dict:
    """Fresh parameters of the member ``setup.config`` from ``key``."""
    from experiments import tasks

    c = setup.config
    kq, kd = jax.random.split(key)
    xq, xd = tasks.get(c.task).example_inputs(setup)
    params = {"query": init_fn(setup.query_model)(kq, xq)}
    if setup.doc_model is not None:
        params["doc"] = init_fn(setup.doc_model)(kd, xd)
    if c.loss.learn_temperature:
        params[LOGIT] = models.logit_params(c.loss.temperature, c.loss.bias if c.loss.name == "siglip" else None)
    return params


# ----------------------------------------------------------------------------- encoding and the loss


def embed(model, params, x, key=None):
    """The embedding (projection output) of ``x``; dropout draws from ``key`` when given."""
    return model.apply(params, x, rngs={"dropout": key} if key is not None else None)[1]


def _scale_kwargs(c, entry, lp, hp):
    """Temperature / SigLIP scale and bias (``entry.scale``): the member's ``hp``, or learned ``lp``."""
    scale = models.logit_scale(lp, c.loss.max_logit_scale) if lp is not None else 1.0 / hp["temperature"]
    if entry.scale == "logit_scale":
        bias = lp["bias"] if lp is not None and "bias" in lp else hp["bias"]
        return {"logit_scale": scale, "logit_bias": bias}
    if entry.scale == "temperature":
        return {"temperature": 1.0 / scale}
    return {}


def make_objective(setup: Setup):
    """``objective(reps, lp, extra, hp) -> loss`` for the configured loss (inside shard_map).

    How the loss is called is read off its registry entry (:mod:`jaxneg.registry`): its
    ``inputs`` family, whether it sees every device's negatives (``cross_device``; the others
    are averaged over devices), its ``scale`` argument and the keywords it accepts. The
    member's hyperparameters ``hp`` (temperature, bias, swept loss keywords) are traced
    arrays, so one program serves every member of a vectorised group.
    """
    c = setup.config
    entry = LOSSES.info(c.loss.name)
    fn = entry.fn
    static = c.loss.kwargs.to_dict()
    ax = {"axis_name": AXIS, "gather": c.loss.gather} if entry.cross_device else {}

    def objective(reps, lp, extra, hp):
        kw = {**static, **hp["loss_kwargs"], **_scale_kwargs(c, entry, lp, hp)}
        a, b, neg = reps
        if entry.inputs == "pair":
            if neg is not None:
                kw["negatives"] = neg
                if "negatives_mask" in extra:
                    kw["negatives_mask"] = extra["negatives_mask"]
            if c.loss.supervised and entry.labels:
                kw["labels"] = extra["labels"]
            value = fn(a, b, **kw, **ax)
        elif entry.inputs == "views":
            value = fn(jnp.stack([a, b], 1), extra["labels"] if c.loss.supervised else None, **kw, **ax)
        elif entry.inputs == "labelled":
            labels = extra["labels"] if c.loss.supervised else extra["ids"]
            value = fn(jnp.concatenate([a, b]), jnp.concatenate([labels, labels]), **kw)
        else:  # sampled: query, positive, negatives (+ the sampling correction where the loss takes it)
            if "log_q" in entry.keywords:
                kw.update(log_q=extra["log_q"], positive_log_q=extra["positive_log_q"],
                          positive_ids=extra["doc_id"], negative_ids=extra["negative_ids"])
            value = fn(a, b, neg, **kw)
        return value if entry.cross_device else jax.lax.pmean(value, AXIS)

    return objective


# ----------------------------------------------------------------------------- evaluation helpers


@functools.lru_cache(maxsize=16)
def init_fn(model):
    """``jax.jit(model.init)``, one per model definition: the members of a group (and a run's
    evaluation at init) initialise without re-tracing the model eagerly each time."""
    return jax.jit(model.init)


@functools.lru_cache(maxsize=16)
def apply_fn(model):
    """``jax.jit(model.apply)``, one per model definition (flax modules hash by their fields), so
    evaluation and the index refresh compile once per run instead of on every call."""
    return jax.jit(model.apply)


def encode_all(model, params, x, chunk=1024):
    """``(features, embeddings)`` of every row of ``x``, in chunks."""
    f = apply_fn(model)
    outs = [f(params, jnp.asarray(x[i:i + chunk])) for i in range(0, len(x), chunk)]
    return jnp.concatenate([o[0] for o in outs]), jnp.concatenate([o[1] for o in outs])


#: the representation metrics, jitted once (they are several small ops each; run eagerly, their
#: dispatch cost more than their arithmetic in every evaluation)
METRICS = {name: jax.jit(getattr(evaluation, name)) for name in ("alignment", "uniformity", "tolerance", "rankme")}


def pair_metrics(setup: Setup, z1, z2, key) -> dict:
    """Metrics of matched embedding pairs ``z1[i] <-> z2[i]`` every task reports."""
    m = min(setup.config.eval.num_candidates, z1.shape[0])
    return {"alignment": float(METRICS["alignment"](z1, z2)), "uniformity": float(METRICS["uniformity"](z1)),
            "contrastive_accuracy": evaluation.contrastive_accuracy(key, z1, z2, num_candidates=m)}


def eval_key(setup: Setup):
    return jax.random.key(setup.config.seed + 1_000_003)


def process_batch(setup: Setup, seed: int, step: int) -> tuple[np.ndarray, dict]:
    """``(indices, rows)`` of this process' share of global batch ``step``, a pure function of
    ``(seed, step)`` (:func:`jaxneg.data.batch_indices`); each process takes its slice in order."""
    c = setup.config
    idx = data.batch_indices(seed, step, len(setup.train), c.batch_size)
    per = c.batch_size // jax.process_count()
    idx = idx[jax.process_index() * per:(jax.process_index() + 1) * per]
    return idx, setup.train.take(idx)


def first_rows(split: data.Data, n: int) -> dict:
    return split.take(np.arange(min(n, len(split))))
