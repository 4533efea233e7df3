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

References:
  Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations*, ICML 2020.
  He et al., *Momentum Contrast for Unsupervised Visual Representation Learning*, CVPR 2020.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments import checks
from experiments.tasks import common
from experiments.tasks.common import (METRICS, AXIS, Setup, embed, encode_all, eval_key, first_rows, pair_metrics,
                                      process_batch)
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


def needs(config) -> tuple:
    """The dataset fields it reads: ``x``, and ``label`` for a supervised loss."""
    return ("x", "label") if config.loss.supervised else ("x",)


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
    return {}


def init_state(setup: Setup, params, key) -> dict:
    """MoCo: the key encoder's parameters (a copy of the query tower) and the queue."""
    c = setup.config
    if not c.moco.enabled:
        return {}
    out = {"key_params": jax.tree.map(jnp.array, params["query"])}
    if c.moco.queue_size:
        x, _ = example_inputs(setup)
        dim = jax.eval_shape(setup.query_model.apply, params["query"], x)[1].shape[-1]
        out["queue"] = samplers.queue_init(c.moco.queue_size, dim, key=jax.random.fold_in(key, 7))._asdict()
    return out


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
        if "queue" in state:
            queue = samplers.Queue(**state["queue"])
            fixed, extra["negatives_mask"] = queue.keys, queue.mask
    return common.StepInputs((a, b, None), extra, None, fixed)


def after_step(setup: Setup, state, params, extra, hp) -> dict:
    """MoCo: push the global batch's keys into the queue, then move the key encoder towards the query encoder."""
    c = setup.config
    if not c.moco.enabled:
        return state
    state = dict(state)
    if "queue" in state:
        keys = parallel.gather_replicated(extra["keys"], AXIS)  # device order = global batch order
        state["queue"] = samplers.queue_push(samplers.Queue(**state["queue"]), keys,
                                             size=hp["queue_size"])._asdict()
    m = hp["moco_momentum"]
    state["key_params"] = jax.tree.map(lambda k, q: m * k + (1.0 - m) * q, state["key_params"], params["query"])
    return state


@functools.lru_cache(maxsize=16)
def _view_fns(view: str, kwargs_items: tuple):
    """Jitted ``(identity views of a batch, two random views)`` for a view name and its kwargs' items."""
    kwargs = dict(kwargs_items)
    return (jax.jit(jax.vmap(data.identity_view, (None, 0))),
            jax.jit(lambda k, x: data.two_views(k, x, view, **kwargs)))


def evaluate(setup: Setup, params) -> dict:
    """kNN / linear-probe accuracy, tolerance and RankMe on frozen features, and view-pair metrics."""
    c, ev = setup.config, setup.config.eval
    key = eval_key(setup)
    test = first_rows(setup.test, ev.max_examples)
    train = first_rows(setup.eval_train, ev.max_examples)
    identity, two_views = _view_fns(c.data.view, tuple(sorted(c.data.view_kwargs.to_dict().items())))
    view = lambda x: identity(key, jnp.asarray(x))
    model, p = setup.query_model, params["query"]
    h_te, z_te = encode_all(model, p, view(test["x"]))
    out = {}
    if "label" in train:
        h_tr, _ = encode_all(model, p, view(train["x"]))
        k = setup.test.num_classes
        out["knn_accuracy"] = evaluation.knn_accuracy(h_tr, train["label"], h_te, test["label"], k=ev.knn_k,
                                             temperature=ev.knn_temperature, num_classes=k)
        out["linear_probe_accuracy"] = evaluation.linear_probe(h_tr, train["label"], h_te, test["label"], num_classes=k,
                                                      steps=ev.probe_steps)["test_accuracy"]
        out["tolerance"] = float(METRICS["tolerance"](z_te, jnp.asarray(test["label"])))
    v1, v2 = two_views(key, jnp.asarray(test["x"]))
    _, z1 = encode_all(model, p, v1)
    _, z2 = encode_all(model, p, v2)
    out["rankme"] = float(METRICS["rankme"](h_te))
    out.update(pair_metrics(setup, z1, z2, key))
    return out


TASK = common.register(common.Task(
    name="views", needs=needs, uses_corpus=False, validate=validate, host_batch=host_batch,
    example_inputs=example_inputs, consts=consts, init_state=init_state, make_encode=make_encode,
    make_objective=make_objective, inputs=inputs, after_step=after_step, evaluate=evaluate))
