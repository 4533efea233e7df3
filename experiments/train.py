r"""Train a contrastive encoder from a config: ``python -m experiments.train --config C --workdir D``.

::

    python -m experiments.train --config experiments/configs/simclr_mnist1d.py --workdir runs/a \
        --config.batch_size=512 --config.loss.name=debiased --config.loss.kwargs.tau_plus=0.1

Every field of the config can be overridden with ``--config.<field>=<value>`` (a Python
literal, else a string); under the keyword-argument groups (``loss.kwargs``,
``sampler.kwargs``, ``model.kwargs``, ``model.doc_kwargs``, ``data.view_kwargs``,
``data.config``) new keys may be added, and they are checked against the signature of the
function they are passed to. A bad field or value prints one line and exits with status 2.

One step (jitted; ``jax.shard_map`` over the ``data`` axis of every device)::

    x_local -> views / (query, doc[, sampled negatives]) -> encoder -> loss(axis_name="data")
            -> grads (optionally gradient-cached in chunks) -> optax update (replicated)

Losses and samplers are chosen by registry name (``config.loss.name``,
``config.sampler.name``); the losses that take ``axis_name`` see the negatives of every
device, the others are computed per device and averaged. The batch order and every random
key are pure functions of ``(config.seed, step)``, so a resumed run is bit-identical to an
uninterrupted one.

The work directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per logged
step or evaluation), TensorBoard event files (``tb/``, written by tensorboardX: no
TensorFlow), orbax checkpoints (``checkpoints/``, every ``checkpoint_every`` steps and at the
end, newest ``keep_checkpoints`` kept, each verified by ``manifests/``) and, when the run is
done, ``result.json``. Starting again in the same directory resumes from the newest good
checkpoint, or returns the finished result. A non-finite loss stops the run with the step
number (``failed.json``), leaving the last good checkpoint in place.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import config_lib
from experiments.checkpoints import Checkpoints
from jaxneg import LOSSES, SAMPLERS, data, gradcache, models, parallel, rundir
from jaxneg import eval as E

AXIS = parallel.DATA


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or inf; ``step`` is the 0-based step that produced it."""

    def __init__(self, step: int, value: float, last_checkpoint: int | None):
        self.step, self.value, self.last_checkpoint = step, value, last_checkpoint
        super().__init__(f"loss is {value} at step {step}; stopped. Last good checkpoint: step {last_checkpoint}")


# ----------------------------------------------------------------------------- set-up


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
    devices = jax.devices()
    if config.num_devices > len(devices):
        raise ValueError(f"config.num_devices={config.num_devices} but only {len(devices)} devices exist")
    mesh = parallel.data_mesh(AXIS, devices[: config.num_devices or None])
    config_lib.validate(config, mesh.size)
    d = config.data
    kw = dict(data_dir=d.data_dir or None, config=d.config.to_dict())
    train = data.load(d.name, d.train_split, max_examples=d.max_train_examples or None, **kw)
    test = data.load(d.name, d.test_split, **kw)
    corpus = data.load(d.name, d.corpus_split, **kw) if config.task == "pairs" else None
    eval_train = data.load(d.name, d.eval_train_split, max_examples=config.eval.max_examples, **kw) \
        if d.eval_train_split and d.eval_train_split != d.train_split else train
    need = {"x"} if config.task == "views" else {"tokens", "doc_id", "group"}
    for split in (train, test):
        if not need <= set(split.arrays):
            raise ValueError(f"config.task={config.task!r} needs fields {sorted(need)} in dataset {d.name!r} "
                             f"split {split.split!r}, which has {sorted(split.arrays)}")
    if config.loss.supervised and "label" not in train.arrays and config.task == "views":
        raise ValueError(f"config.loss.supervised needs a 'label' field in dataset {d.name!r}")
    q = _encoder(config.model.name, config.model.kwargs, config, corpus)
    doc = _encoder(config.model.doc_name, config.model.doc_kwargs, config, corpus) if config.model.doc_name else None
    return Setup(config, mesh, train, test, corpus, eval_train, q, doc, config.model.doc_name == "id_embedding")


def _host_batch(setup: Setup, step: int) -> dict:
    """This process' share of global batch ``step`` (NumPy), a pure function of (seed, step)."""
    c = setup.config
    idx = data.batch_indices(c.seed, step, len(setup.train), c.batch_size)
    per = c.batch_size // jax.process_count()
    idx = idx[jax.process_index() * per:(jax.process_index() + 1) * per]
    b = setup.train.take(idx)
    if c.task == "views":
        out = {"x": b["x"], "id": idx.astype(np.int32)}
        if "label" in b:
            out["label"] = b["label"].astype(np.int32)
        return out
    doc = b["doc_id"] if setup.doc_by_id else setup.corpus.arrays["tokens"][b["doc_id"]]
    return {"q": b["tokens"], "doc": doc, "doc_id": b["doc_id"].astype(np.int32), "group": b["group"].astype(np.int32)}


def _example_inputs(setup: Setup):
    b = _host_batch(setup, 0)
    if setup.config.task == "views":
        x = data.two_views(jax.random.key(0), jnp.asarray(b["x"][:1]), setup.config.data.view,
                           **setup.config.data.view_kwargs.to_dict())[0]
        return x, None
    return jnp.asarray(b["q"][:1]), jnp.asarray(b["doc"][:1])


def init_params(setup: Setup, key) -> dict:
    c = setup.config
    kq, kd = jax.random.split(key)
    xq, xd = _example_inputs(setup)
    params = {"query": setup.query_model.init(kq, xq)}
    if setup.doc_model is not None:
        params["doc"] = setup.doc_model.init(kd, xd)
    if c.loss.learn_temperature:
        params["logit"] = models.logit_params(c.loss.temperature, c.loss.bias if c.loss.name == "siglip" else None)
    return params


def make_optimizer(c: ml_collections.ConfigDict):
    """``(tx, lr)``: the optax transformation and the learning rate of each step.

    With ``optimizer.accumulate = k > 1`` the gradients of ``k`` consecutive steps are
    averaged into one update (``optax.MultiSteps``; each step's negatives stay within its own
    batch), and the schedule runs over the ``steps / k`` updates.
    """
    o = c.optimizer
    k = o.accumulate
    updates = c.steps // k
    warm = min(o.warmup_steps // k, updates - 1)
    if o.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, max(warm, 0), updates)
    else:
        lr = optax.join_schedules([optax.linear_schedule(0.0, o.learning_rate, max(warm, 1)),
                                   optax.constant_schedule(o.learning_rate)], [max(warm, 1)])
    decay_mask = lambda params: {k: jax.tree.map(lambda _: k != "logit", v) for k, v in params.items()}
    if o.name == "adam":
        tx = optax.adam(lr)
    elif o.name == "adamw":
        tx = optax.adamw(lr, weight_decay=o.weight_decay, mask=decay_mask)
    elif o.name == "sgd":
        tx = optax.chain(optax.add_decayed_weights(o.weight_decay, decay_mask), optax.sgd(lr, momentum=o.momentum))
    else:  # lars, as in SimCLR
        tx = optax.lars(lr, weight_decay=o.weight_decay, weight_decay_mask=decay_mask, momentum=o.momentum)
    if o.grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
    if k > 1:
        return optax.MultiSteps(tx, every_k_schedule=k), lambda step: lr(step // k)
    return tx, lr


# ----------------------------------------------------------------------------- the step


def _loss_scale_kwargs(c, entry, lp):
    """Temperature / SigLIP scale and bias (``entry.scale``): fixed from the config, or from learned ``lp``."""
    scale = models.logit_scale(lp, c.loss.max_logit_scale) if lp is not None else 1.0 / c.loss.temperature
    if entry.scale == "logit_scale":
        bias = lp["bias"] if lp is not None and "bias" in lp else c.loss.bias
        return {"logit_scale": scale, "logit_bias": bias}
    if entry.scale == "temperature":
        return {"temperature": 1.0 / scale}
    return {}


def make_objective(setup: Setup):
    """``objective(reps, lp, extra) -> loss`` for the configured loss (inside shard_map).

    How the loss is called is read off its registry entry (:mod:`jaxneg.registry`): its
    ``inputs`` family, whether it sees every device's negatives (``cross_device``; the others
    are averaged over devices), its ``scale`` argument and the keywords it accepts.
    """
    c = setup.config
    entry = LOSSES.info(c.loss.name)
    fn = entry.fn
    kwargs = c.loss.kwargs.to_dict()
    ax = {"axis_name": AXIS, "gather": c.loss.gather} if entry.cross_device else {}

    def objective(reps, lp, extra):
        kw = {**kwargs, **_loss_scale_kwargs(c, entry, lp)}
        a, b, neg = reps
        if entry.inputs == "pair":
            if neg is not None:
                kw["negatives"] = neg
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


def make_encode(setup: Setup):
    """``encode(enc_params, inputs, key) -> reps``: (views) or (queries, docs, negatives)."""
    qm, dm = setup.query_model, setup.doc_model or setup.query_model
    emb = lambda m, p, x, k: m.apply(p, x, rngs={"dropout": k})[1]

    def encode(enc, inputs, key):
        a, b, neg = inputs
        k = jax.random.split(key, 3)
        doc_params = enc.get("doc", enc["query"])
        za = emb(qm, enc["query"], a, k[0])
        zb = emb(dm if "doc" in enc else qm, doc_params, b, k[1]) if setup.config.task == "pairs" else emb(
            qm, enc["query"], b, k[1])
        zn = None
        if neg is not None:  # per-query negatives [B, K, *doc_shape]
            zn = emb(dm if "doc" in enc else qm, doc_params, neg.reshape((-1,) + b.shape[1:]), k[2])
            zn = zn.reshape(neg.shape[:2] + zn.shape[-1:])
        return za, zb, zn

    return encode


def _corpus_inputs(setup: Setup):
    if setup.corpus is None:
        return None
    n = len(setup.corpus)
    return jnp.arange(n, dtype=jnp.int32) if setup.doc_by_id else jnp.asarray(setup.corpus.arrays["tokens"])


def _doc_counts(setup: Setup) -> np.ndarray:
    """Training-set popularity of each document (for the popularity sampler's log Q)."""
    return np.bincount(setup.train.arrays["doc_id"], minlength=len(setup.corpus)).astype(np.float32)


def make_step(setup: Setup, tx):
    """The jitted training step ``(state, batch, step, consts) -> (state, metrics)``."""
    c = setup.config
    encode = make_encode(setup)
    objective = make_objective(setup)
    root = jax.random.key(c.seed)
    view_kw = c.data.view_kwargs.to_dict()
    sampler = c.sampler.name
    skw = c.sampler.kwargs.to_dict()

    def sample(key, state, batch, consts):
        """Negatives for the pairs task: (inputs, extra) additions."""
        corpus, counts = consts["corpus"], consts.get("counts")
        ids = batch["doc_id"]
        b, k = ids.shape[0], c.sampler.num_negatives
        extra = {}
        if sampler == "uniform":
            neg = SAMPLERS.get("uniform")(key, corpus.shape[0], (b, k), exclude=ids[:, None])
        elif sampler == "popularity":
            neg, log_q = SAMPLERS.get("popularity")(key, counts, (k,), **skw)
            all_log_q = jnp.log(jnp.maximum(counts, 1e-30) ** skw.get("alpha", 0.75)) - jnp.log(
                jnp.sum(counts ** skw.get("alpha", 0.75)))
            extra = {"log_q": log_q, "positive_log_q": all_log_q[ids], "negative_ids": neg}
        else:  # mined from the index of document embeddings
            qm = setup.query_model
            q = jax.lax.stop_gradient(qm.apply(state["params"]["query"], batch["q"])[1])
            index = state["index"]
            pos = jnp.sum(_unit(q) * _unit(index[ids]), -1)
            depth = k if sampler == "hard_topk" else c.sampler.candidates
            filters = skw if sampler == "hard_topk" else {}
            if filters.get("absolute_margin") is not None or filters.get("relative_margin") is not None:
                filters = dict(filters, positive_scores=pos)
            mined = SAMPLERS.get("hard_topk")(_unit(q), _unit(index), depth, exclude=ids[:, None], **filters)
            if sampler == "simans":
                pick = SAMPLERS.get("simans")(key, mined.scores, pos, k, **skw)
                neg = jnp.take_along_axis(mined.indices, pick.indices, 1)
                ok = pick.mask & (neg >= 0)
            else:
                neg, ok = mined.indices, mined.mask
            # rows with fewer survivors than k (filters) fall back to uniform draws
            fallback = SAMPLERS.get("uniform")(jax.random.fold_in(key, 1), corpus.shape[0], (b, k), exclude=ids[:, None])
            neg = jnp.where(ok, neg, fallback)
        return corpus[neg], extra

    def local_step(state, batch, step, consts):
        key = jax.random.fold_in(jax.random.fold_in(root, step), jax.lax.axis_index(AXIS))
        k_view, k_neg, k_enc = jax.random.split(key, 3)
        extra = {}
        if c.task == "views":
            a, b = data.two_views(k_view, batch["x"], c.data.view, **view_kw)
            neg = None
            extra["ids"] = batch["id"]
            if "label" in batch:
                extra["labels"] = batch["label"]
        else:
            a, b, neg = batch["q"], batch["doc"], None
            extra.update(doc_id=batch["doc_id"], labels=batch["group"])
            if sampler:
                neg, more = sample(k_neg, state, batch, consts)
                extra.update(more)
        if sampler == "popularity":
            inputs, shared = (a, b, None), neg
        else:
            inputs, shared = (a, b, neg), None
        params = state["params"]
        enc = {k: v for k, v in params.items() if k != "logit"}
        lp = params.get("logit")

        if c.gradcache_chunk:  # (config_lib rules out shared negatives here)
            vg = gradcache.value_and_grad(encode, lambda reps, lp_=None: objective(reps, lp_, extra),
                                          chunk_size=c.gradcache_chunk, axis_name=AXIS)
            loss, (g_enc, g_lp) = vg(enc, inputs, k_enc, lp)
            grads = dict(g_enc, **({"logit": g_lp} if lp is not None else {}))
        else:
            def total(params):
                e = {k: v for k, v in params.items() if k != "logit"}
                reps = encode(e, inputs, k_enc)
                if shared is not None:  # popularity: one set of negatives [M] shared by the batch
                    m = setup.doc_model or setup.query_model
                    reps = (reps[0], reps[1], m.apply(e.get("doc", e["query"]), shared)[1])
                return objective(reps, params.get("logit"), extra)

            loss, grads = jax.value_and_grad(total)(params)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new = dict(state, params=optax.apply_updates(params, updates), opt_state=opt_state)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        if lp is not None:
            metrics["temperature"] = 1.0 / models.logit_scale(lp, c.loss.max_logit_scale)
        return new, metrics

    def specs(tree, spec):
        return jax.tree.map(lambda _: spec, tree)

    def step_fn(state, batch, step, consts):
        f = jax.shard_map(local_step, mesh=setup.mesh,
                          in_specs=(specs(state, P()), specs(batch, P(AXIS)), P(), specs(consts, P())),
                          out_specs=P())
        return f(state, batch, step, consts)

    return jax.jit(step_fn, donate_argnums=0)


def _unit(x):
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), -1, keepdims=True), 1e-12))


# ----------------------------------------------------------------------------- evaluation


@functools.lru_cache(maxsize=16)
def _apply_fn(model):
    """``jax.jit(model.apply)``, one per model definition (flax modules hash by their fields), so
    evaluation and the index refresh compile once per run instead of on every call."""
    return jax.jit(model.apply)


def _encode_all(model, params, x, chunk=1024):
    f = _apply_fn(model)
    outs = [f(params, jnp.asarray(x[i:i + chunk])) for i in range(0, len(x), chunk)]
    return jnp.concatenate([o[0] for o in outs]), jnp.concatenate([o[1] for o in outs])


@functools.lru_cache(maxsize=16)
def _view_fns(view: str, kwargs_items: tuple):
    """Jitted ``(identity views of a batch, two random views)`` for a view name and its kwargs' items."""
    kwargs = dict(kwargs_items)
    return (jax.jit(jax.vmap(data.identity_view, (None, 0))),
            jax.jit(lambda k, x: data.two_views(k, x, view, **kwargs)))


def evaluate(setup: Setup, params) -> dict:
    """Downstream metrics of ``params`` on the held-out split (see :mod:`jaxneg.eval`)."""
    c, ev = setup.config, setup.config.eval
    key = jax.random.key(c.seed + 1_000_003)
    n = ev.max_examples
    test = setup.test.take(np.arange(min(n, len(setup.test))))
    out = {}
    if c.task == "views":
        train = setup.eval_train.take(np.arange(min(n, len(setup.eval_train))))
        identity, two_views = _view_fns(c.data.view, tuple(sorted(c.data.view_kwargs.to_dict().items())))
        view = lambda x: identity(key, jnp.asarray(x))
        h_tr, _ = _encode_all(setup.query_model, params["query"], view(train["x"]))
        h_te, z_te = _encode_all(setup.query_model, params["query"], view(test["x"]))
        if "label" in train:
            out["knn_accuracy"] = E.knn_accuracy(h_tr, train["label"], h_te, test["label"], k=ev.knn_k,
                                                 temperature=ev.knn_temperature, num_classes=setup.test.num_classes)
            out["linear_probe_accuracy"] = E.linear_probe(h_tr, train["label"], h_te, test["label"],
                                                          num_classes=setup.test.num_classes,
                                                          steps=ev.probe_steps)["test_accuracy"]
            out["tolerance"] = float(E.tolerance(z_te, test["label"]))
        v1, v2 = two_views(key, jnp.asarray(test["x"]))
        _, z1 = _encode_all(setup.query_model, params["query"], v1)
        _, z2 = _encode_all(setup.query_model, params["query"], v2)
        out["rankme"] = float(E.rankme(h_te))
    else:
        corpus = setup.corpus.arrays
        dm = setup.doc_model or setup.query_model
        dp = params.get("doc", params["query"])
        docs = corpus["doc_id"] if setup.doc_by_id else corpus["tokens"]
        _, zc = _encode_all(dm, dp, docs)
        _, z1 = _encode_all(setup.query_model, params["query"], test["tokens"])
        z2 = zc[test["doc_id"]]
        ks = tuple(k for k in ev.ks if k <= len(setup.corpus)) or (1,)
        out.update(E.retrieval_metrics(z1, zc, test["group"], corpus["group"], ks=ks))
        out["rankme"] = float(E.rankme(zc[: n]))
    out["alignment"] = float(E.alignment(z1, z2))
    out["uniformity"] = float(E.uniformity(z1))
    m = min(ev.num_candidates, z1.shape[0])
    out["contrastive_accuracy"] = E.contrastive_accuracy(key, z1, z2, num_candidates=m)
    return out


# ----------------------------------------------------------------------------- the run


def config_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort())


def _check_workdir(workdir: str, cj: dict) -> None:
    """A work directory that holds a run of another config is refused, naming the differing fields."""
    path = os.path.join(workdir, rundir.CONFIG)
    if not os.path.exists(path):
        return
    old = rundir.read_json(path)
    if old != cj:
        diff = rundir.config_diff(old, cj)
        raise config_lib.ConfigError(f"workdir {workdir} holds a run of a different config (fields {diff}); "
                                     f"use another workdir")


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run (or resume, or return the finished result of) the experiment in ``workdir``.

    Raises :class:`experiments.config_lib.ConfigError` for a bad config or a work directory of
    another config, before anything is created, loaded into memory or compiled.
    """
    if not isinstance(config, ml_collections.ConfigDict):
        what = "a sweep config" if type(config).__name__ == "Sweep" else f"a {type(config).__name__}"
        raise config_lib.ConfigError(f"this is {what}, not a run config; run sweeps with "
                                     f"python -m experiments.sweep --config FILE --workdir DIR")
    workdir = os.path.abspath(workdir)
    result_path = os.path.join(workdir, rundir.RESULT)
    cj = config_json(config)
    try:
        _check_workdir(workdir, cj)
        setup = build(config)  # validates first: bad configs fail here, before any compute
    except config_lib.ConfigError:
        raise
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from e
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    primary = jax.process_index() == 0
    if primary:
        os.makedirs(workdir, exist_ok=True)  # only now: a config that fails validation leaves no directory
        rundir.write_json(os.path.join(workdir, rundir.CONFIG), cj)

    c = config
    tx, lr = make_optimizer(c)
    params = init_params(setup, jax.random.key(c.seed))
    state = {"params": params, "opt_state": tx.init(params)}
    mined = c.sampler.name in ("hard_topk", "simans")
    consts = {}
    if setup.corpus is not None:
        consts["corpus"] = _corpus_inputs(setup)
        if c.sampler.name == "popularity":
            consts["counts"] = jnp.asarray(_doc_counts(setup))
    dm = setup.doc_model or setup.query_model

    def encode_index(params):
        return _encode_all(dm, params.get("doc", params["query"]), np.asarray(consts["corpus"]))[1]

    if mined:
        state["index"] = encode_index(params)
    ckpt = Checkpoints(os.path.join(workdir, "checkpoints"), c.keep_checkpoints, primary)
    # the loss logged every log_every steps is the mean since the last log line; its running
    # (sum, count) is checkpointed so a resumed run logs the same values as an uninterrupted one
    restored = ckpt.restore({**state, "log_window": np.zeros(2, np.float64)}, optional=("log_window",))
    start, last_ckpt = (0, None) if restored is None else (restored[0], restored[0])
    loss_sum, loss_count = 0.0, 0
    if restored is not None:
        state = dict(restored[1])
        window = state.pop("log_window", None)  # None: a checkpoint of an older version
        if window is not None:
            loss_sum, loss_count = float(window[0]), int(window[1])
    if primary:
        print(f"run {workdir}: " + (f"resuming from the checkpoint of step {start} of {c.steps}" if start
                                    else f"starting, {c.steps} steps"), file=sys.stderr, flush=True)
    replicated = NamedSharding(setup.mesh, P())
    state = jax.device_put(state, replicated)
    consts = jax.device_put(consts, replicated)
    metrics_path = os.path.join(workdir, rundir.METRICS)
    if primary:
        rundir.truncate_metrics(workdir, start)
    writer = _tb_writer(workdir, start) if primary else None
    init_eval = None
    if c.eval.at_init:
        init_eval = evaluate(setup, init_params(setup, jax.random.key(c.seed)))
    step_fn = make_step(setup, tx)
    log = open(metrics_path, "a") if primary else None
    bar = _progress(c, start)
    t0, done_in_window, wall0 = time.perf_counter(), 0, time.perf_counter()
    try:
        for step in range(start, c.steps):
            if mined and step % c.sampler.refresh_every == 0 and step > 0:
                state["index"] = jax.device_put(encode_index(state["params"]), replicated)
            batch = parallel.shard_batch(_host_batch(setup, step), setup.mesh, AXIS)
            state, m = step_fn(state, batch, jnp.int32(step), consts)
            loss = float(m["loss"])
            if not np.isfinite(loss):
                if primary:
                    rundir.write_json(os.path.join(workdir, rundir.FAILED),
                                {"status": "non_finite_loss", "step": step, "loss": str(loss),
                                 "last_checkpoint": last_ckpt})
                raise NonFiniteLoss(step, loss, last_ckpt)
            loss_sum, loss_count = loss_sum + loss, loss_count + 1
            done_in_window += 1
            count = step + 1
            if bar is not None:
                bar.update(1)
            if count % c.log_every == 0 or count == c.steps:
                rate = done_in_window / (time.perf_counter() - t0)
                row = {"step": count, "loss": loss_sum / loss_count, "learning_rate": float(lr(step)),
                       "grad_norm": float(m["grad_norm"]), "steps_per_sec": rate}
                if "temperature" in m:
                    row["temperature"] = float(m["temperature"])
                _log(log, writer, row)
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                elif primary:  # no bar (sweeps, logs): one line per logged step instead
                    print(f"step {count}/{c.steps}  loss {row['loss']:.4f}  lr {row['learning_rate']:.3g}  "
                          f"{rate:.1f} steps/s", file=sys.stderr, flush=True)
                t0, done_in_window, loss_sum, loss_count = time.perf_counter(), 0, 0.0, 0
            if count % c.checkpoint_every == 0 or count == c.steps:
                ckpt.save(count, {**state, "log_window": np.array([loss_sum, loss_count], np.float64)})
                last_ckpt = count
            if c.eval_every and count % c.eval_every == 0 and count != c.steps:
                _log(log, writer, {"step": count, **{f"eval/{k}": v for k, v in evaluate(setup, state["params"]).items()}})
        final = evaluate(setup, state["params"])
        _log(log, writer, {"step": c.steps, **{f"eval/{k}": v for k, v in final.items()}})
        result = {"status": "finished", "steps": c.steps, "eval": final,
                  "final_loss": rundir.last_loss(workdir) if primary else None,
                  "num_devices": setup.mesh.size, "num_params": int(sum(np.size(x) for x in jax.tree.leaves(state["params"]))),
                  "wall_seconds": time.perf_counter() - wall0, "resumed_from": start or None}
        if init_eval is not None:
            result["init_eval"] = init_eval
        if primary:
            rundir.write_json(result_path, result)
            print("finished: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items() if isinstance(v, float)),
                  file=sys.stderr, flush=True)
        return result
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        if writer is not None:
            writer.close()
        ckpt.close()


def _log(log, writer, row):
    if log is None:
        return
    log.write(json.dumps(row, default=float) + "\n")
    log.flush()
    for k, v in row.items():
        if k != "step":
            writer.add_scalar(k, v, row["step"])
    writer.flush()


def _tb_writer(workdir, start):
    from tensorboardX import SummaryWriter

    return SummaryWriter(os.path.join(workdir, "tb"), purge_step=start or None)


def _progress(c, start):
    if not c.progress or jax.process_index() != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=c.steps, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)


# ----------------------------------------------------------------------------- command line


_OVERRIDES: list = []  # (field, text) of --config.<field>=<value>, filled by config_lib.flags_parser


def main(argv):
    from absl import flags, logging

    del argv
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    try:
        config = config_lib.apply_overrides(config_lib.load_file(flags.FLAGS.config), _OVERRIDES)
        result = train(config, flags.FLAGS.workdir)
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    print(json.dumps({"workdir": flags.FLAGS.workdir, **result["eval"]}, indent=2, default=float))


def _flags():
    from absl import flags

    flags.DEFINE_string("config", "experiments/configs/simclr_mnist1d.py",
                        "run config: path/to/file.py[:arg]. Override any field with --config.<field>=<value> "
                        "(a Python literal, else a string), including keyword arguments: "
                        "--config.loss.kwargs.tau_plus=0.1, --config.model.kwargs.channels='(16, 32)'")
    flags.DEFINE_string("workdir", None, "run directory (created; an existing one is resumed)")
    flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
    from absl import app

    _flags()
    parallel.initialize()
    app.run(main, flags_parser=config_lib.flags_parser(_OVERRIDES))
