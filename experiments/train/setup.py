"""What a run builds before its first step (data, models), its evaluation, and the baselines of its protocol."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from experiments import config_lib, tasks
from experiments.tasks.common import AXIS, Setup, init_params
from experiments.train.members import _member, config_json
from jaxneg import data, models, parallel, rundir


def evaluate(setup: Setup, params) -> dict:
    """Downstream metrics of ``params`` on the held-out split (the task's; see :mod:`jaxneg.evaluation`)."""
    return tasks.get(setup.config.task).evaluate(setup, params)


def evaluate_members(setups, params) -> list[dict]:
    """:func:`evaluate` of the members of a program: ``setups`` (each member's), ``params`` stacked
    ``[M, ...]``; one vmapped evaluation where the task has one (``Task.evaluate_members``), else
    member by member."""
    task = tasks.get(setups[0].config.task)
    if task.evaluate_members is not None:
        return task.evaluate_members(setups[0], params, [s.config.seed for s in setups])
    return [evaluate(s, _member(params, i)) for i, s in enumerate(setups)]


#: the config fields that define an evaluation protocol (a baseline holds for every run that shares them)
#: the config groups that fix what an evaluation measures: the task, its data (dataset, splits, sizes, views), the
#: models (the untrained encoder is the baseline) and the evaluation itself. Every field under them is part of
#: the protocol but the few that only training reads (:data:`TRAINING_ONLY`); a field added to these groups
#: joins the protocol without a list to update (a hand list here once missed five).
PROTOCOL_GROUPS = ("task", "data", "model", "eval")
TRAINING_ONLY = ("eval.at_init", "model.centre_momentum", "model.norm_splits")


def protocol(config: ml_collections.ConfigDict) -> dict:
    """The fields of ``config`` that fix what its evaluation and its raw-input view measure: every field of
    :data:`PROTOCOL_GROUPS` but :data:`TRAINING_ONLY`. Runs with equal protocols share their baselines."""
    return protocol_of_json(config_json(config))


def protocol_of_json(config: dict) -> dict:
    """:func:`protocol` of a config as plain JSON data (a run's ``config.json``)."""
    flat = rundir.flat(config)
    inside = lambda f, groups: any(f == g or f.startswith(g + ".") for g in groups)  # noqa: E731
    return {f: v for f, v in flat.items() if inside(f, PROTOCOL_GROUPS) and not inside(f, TRAINING_ONLY)}


def baselines(config: ml_collections.ConfigDict, seeds=None) -> dict:
    """The floors every result of ``config``'s protocol is read against, without training.

    ``{"raw_input": {metric: value}, "untrained_encoder": {metric: mean over seeds},
    "untrained_encoder_seeds": {seed: {metric: value}}, "protocol": {field: value}}``: the
    task's evaluation (``eval/``-prefixed, as in ``results.csv``) of the raw inputs
    (:func:`jaxneg.evaluation.classification` on the flattened identity view) and of the encoder
    at its initialisation for each of ``seeds`` (default: ``config.seed``). Command line:
    ``python -m experiments.train --config FILE --baselines``.
    """
    setup = build(config)  # (validates first)
    seeds = [int(s) for s in (seeds if seeds is not None else [config.seed])]
    task = tasks.get(config.task)
    raw = task.raw_input(setup)
    notes = {k: v for k, v in raw.items() if isinstance(v, str)}  # e.g. "method": what the raw input is
    raw = {f"eval/{k}": float(v) for k, v in raw.items() if k not in notes}
    per_seed = {}
    for seed in seeds:
        c = config.copy_and_resolve_references()
        c.seed = seed
        member = setup.member(c)
        per_seed[seed] = {f"eval/{k}": float(v) for k, v in evaluate(member, init_params(member, jax.random.key(seed))).items()
                          if isinstance(v, (int, float))}
    keys = sorted(set.intersection(*(set(v) for v in per_seed.values())))
    mean = {k: float(np.mean([per_seed[s][k] for s in seeds])) for k in keys}
    return {"raw_input": raw, "raw_input_notes": notes, "untrained_encoder": mean,
            "untrained_encoder_seeds": {str(s): v for s, v in per_seed.items()}, "protocol": protocol(config)}


# ----------------------------------------------------------------------------- setup


def _encoder(name, kwargs, config, corpus, splits=()):
    """The encoder of ``model.name`` (or ``doc_name``) with the arguments the data determine: a bag of tokens
    gets the largest token id of every split + 1 (queries may use words no document does), an item-id
    embedding the corpus size."""
    kwargs = dict(kwargs)
    if name in ("bag_of_tokens",) and "vocab_size" not in kwargs:
        tokens = [s.arrays["tokens"] for s in (corpus, *splits) if s is not None and "tokens" in s.arrays]
        kwargs["vocab_size"] = int(max(max(int(t.max()) for t in tokens), 1)) + 1 if tokens else 2048
    if name == "id_embedding" and "num_items" not in kwargs:
        kwargs["num_items"] = len(corpus)
    head = models.ProjectionHead(config.model.embed_dim, tuple(config.model.head_hidden),
                                 output_bias=tasks.get(config.task).output_bias(config)) if config.model.embed_dim else None
    return models.build(name, head, **kwargs)


def build(config: ml_collections.ConfigDict) -> Setup:
    """Validate ``config``, load the data and build the models (no compilation yet)."""
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
    # a corpus is addressed by id: in id order row i is id i (a stored split may come in any order)
    corpus = data.in_id_order(data.load(d.name, d.corpus_split, **kw), task.corpus_id) if task.corpus_id else None
    eval_train = data.load(d.name, d.eval_train_split, max_examples=config.eval.max_examples, **kw) \
        if d.eval_train_split and d.eval_train_split != d.train_split else train
    needs = task.needs(config)
    for split in (train, test):
        if not set(needs) <= set(split.arrays):
            raise ValueError(f"config.task={config.task!r} (with this config) needs fields {sorted(needs)} in dataset "
                             f"{d.name!r} split {split.split!r}, which has {sorted(split.arrays)}")
        if corpus is not None:
            data.check_ids(split, task.corpus_id, corpus)
    q = _encoder(config.model.name, config.model.kwargs, config, corpus, (train, test))
    doc = _encoder(config.model.doc_name, config.model.doc_kwargs, config, corpus, (train, test)) \
        if config.model.doc_name else None
    return Setup(config, mesh, train, test, corpus, eval_train, q, doc, config.model.doc_name == "id_embedding")
