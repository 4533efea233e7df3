"""The views task's evaluation: kNN and a linear probe on frozen backbone features, tolerance and RankMe, the
view-pair metrics, every member of a pass in one vmapped call each; and the raw-input baseline."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tasks.common import Setup, encode_all, eval_key, first_rows, pair_metric_values
from jaxneg import data, evaluation


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
    # mean's counterpart; the running centre tracks that mean), and with batch_norm divided by its standard
    # deviation (one group: the set). The backbone features h are never centred.
    centre = _centre_fn(c.model.centre)
    encode = lambda x: encode_all(setup.query_model, p, x, members=True)  # noqa: E731  ([M, N, ...] each)
    h_te, z_te = encode(identity)
    z_te = centre(z_te)
    out = _metrics(keys, h_te, centre(encode(v1)[1]), centre(encode(v2)[1]), min(int(ev.num_candidates), len(test["x"])))
    if "label" in train:
        h_tr, _ = encode(views(keys, jnp.asarray(train["x"]), False)[0])
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
#: BatchNorm's epsilon (``model.centre='batch_norm'``, :func:`experiments.tasks.views.centred`), PyTorch's and Flax's
NORM_EPS = 1e-5


def _centre_fn(mode: str):
    """The evaluation's :func:`~experiments.tasks.views.centred` of ``z [members, n, d]``: its statistics are
    the evaluated set's own."""
    if mode == "none":
        return lambda z: z
    if mode == "batch_norm":
        return lambda z: ((z - jnp.mean(z, 1, keepdims=True))
                          * jax.lax.rsqrt(jnp.var(z, 1, keepdims=True) + NORM_EPS))
    return lambda z: z - jnp.mean(z, 1, keepdims=True)


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


@functools.partial(jax.jit, static_argnums=4)
def _metrics(keys, h, z1, z2, candidates):
    """RankMe of the features and the view-pair metrics (:func:`~experiments.tasks.common.pair_metric_values`),
    vmapped over members (shared by every encoder)."""
    return jax.vmap(lambda key, h, z1, z2: {"rankme": evaluation.rankme(h), **pair_metric_values(key, z1, z2, candidates)})(
        keys, h, z1, z2)


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
