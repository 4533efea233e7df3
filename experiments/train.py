r"""Train a contrastive encoder from a config: ``python -m experiments.train --config C --workdir D``.

::

    python -m experiments.train --config experiments/configs/simclr_mnist1d.py --workdir runs/a \
        --config.batch_size=512 --config.loss.name=debiased --config.loss.kwargs.tau_plus=0.1

Every field of the config can be overridden with ``--config.<field>=<value>`` (a Python
literal, else a string); under the keyword-argument groups (``loss.kwargs``,
``sampler.kwargs``, ``model.kwargs``, ``model.doc_kwargs``, ``data.view_kwargs``,
``data.config``) new keys may be added, and they are checked against the signature of the
function they are passed to. A bad field or value prints one line and exits with status 2.

This module is the loop: restore, step, log, checkpoint, non-finite losses, result. What
is trained on (batches, encoding, negatives, evaluation) is the task's
(:mod:`experiments.tasks`). One step (jitted; ``jax.shard_map`` over the ``data`` axis of
every device)::

    batch -> task.inputs (views / queries, docs, negatives) -> encoder -> loss(axis_name="data")
          -> grads (optionally gradient-cached in chunks) -> optax update (replicated) -> task.after_step

**Members.** :func:`train_group` trains several configs that differ only in
:data:`MEMBER_FIELDS` (seed, temperature, learning rate, weight decay, float loss keywords,
...) as members of ONE compiled program: ``jax.vmap`` over the members' parameters,
optimiser states, data and RNG keys, with each member's hyperparameters passed as traced
arrays (:func:`hparams`), so one compilation serves them all. ``members_per_step`` members
pass through the compiled step at once (:func:`step_width`: all of them on an accelerator, one
at a time on CPU, where the vmapped step is slower per member); the members of a pass are
evaluated together (``Task.evaluate_members``). Each member keeps its own work directory
(``metrics.jsonl``, checkpoints, ``result.json``) and is exactly the run :func:`train` would
make of its config alone (bit for bit when it passes alone, else up to float reassociation).
:func:`train` is a group of one.

**Keeping the device busy.** The host dispatches step ``t`` before it reads step ``t - 1``'s
losses, so it prepares the next batch while the device computes; checkpoints are written from a
host copy by a background thread (:class:`~experiments.checkpoints.Checkpoints`); every program
keeps a time account (:class:`Clock`).

Losses and samplers are chosen by registry name (``config.loss.name``,
``config.sampler.name``); the losses that take ``axis_name`` see the negatives of every
device, the others are computed per device and averaged. The batch order and every random
key are pure functions of ``(config.seed, step)``, so a resumed run is bit-identical to an
uninterrupted one.

The work directory's files are listed in :mod:`jaxneg.rundir`. Checkpoints are written every
``checkpoint_every`` steps and at the end (the newest ``keep_checkpoints`` kept, each verified by
its manifest). Starting again in the same directory resumes from the newest good checkpoint, or
returns the finished result; a directory that another process is training is refused. A
non-finite loss stops the run (the member) with the step number (``failed.json``), leaving
the last good checkpoint in place. SIGINT and SIGTERM stop the command line cleanly
(:mod:`experiments.stopping`: exit 130 / 143, checkpoints kept).

The command lines turn on JAX's persistent compilation cache
(:func:`enable_compilation_cache`), so relaunching a run or a sweep does not compile again.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from experiments import config_lib, stopping, tasks
from experiments.checkpoints import Checkpoints
from experiments.tasks.common import AXIS, LOGIT, Setup, doc_tower, embed, encoder_params, init_params
from jaxneg import LOSSES, data, gradcache, models, parallel, rundir

__all__ = ["train", "train_group", "baselines", "protocol", "group_key", "MEMBER_FIELDS", "MEMBERS", "hparams", "build", "init_params", "evaluate",
           "evaluate_members",
           "make_optimizer", "make_step", "Setup", "NonFiniteLoss", "enable_compilation_cache"]


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or inf; ``step`` is the 0-based step that produced it."""

    def __init__(self, step: int, value: float, last_checkpoint: int | None):
        self.step, self.value, self.last_checkpoint = step, value, last_checkpoint
        super().__init__(f"loss is {value} at step {step}; stopped. Last good checkpoint: step {last_checkpoint}")


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
TRAINING_ONLY = ("eval.at_init", "model.centre_momentum")


def protocol(config: ml_collections.ConfigDict) -> dict:
    """The fields of ``config`` that fix what its evaluation and its raw-input view measure: every field of
    :data:`PROTOCOL_GROUPS` but :data:`TRAINING_ONLY`. Runs with equal protocols share their baselines."""
    flat = rundir.flat(config_json(config))
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
    raw = {f"eval/{k}": float(v) for k, v in task.raw_input(setup).items()}
    per_seed = {}
    for seed in seeds:
        c = config.copy_and_resolve_references()
        c.seed = seed
        member = setup.member(c)
        per_seed[seed] = {f"eval/{k}": float(v) for k, v in evaluate(member, init_params(member, jax.random.key(seed))).items()
                          if isinstance(v, (int, float))}
    keys = sorted(set.intersection(*(set(v) for v in per_seed.values())))
    mean = {k: float(np.mean([per_seed[s][k] for s in seeds])) for k in keys}
    return {"raw_input": raw, "untrained_encoder": mean, "untrained_encoder_seeds": {str(s): v for s, v in per_seed.items()},
            "protocol": protocol(config)}


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


# ----------------------------------------------------------------------------- members


@dataclasses.dataclass(frozen=True)
class MemberField:
    """A config field whose value may differ between the members of one compiled program.

    ``name``: its key in the member's hyperparameters (:func:`hparams`), which reach the step as
    traced arrays of ``dtype``; ``None``: a field the step never reads (it only shapes output).
    """

    field: str
    name: str | None = None
    dtype: type = np.float32


#: the one table of member fields: :data:`MEMBER_FIELDS`, :func:`group_key` and :func:`hparams`
#: derive from it. Besides these, a loss' float keywords may differ (traced per member) unless its
#: registry entry lists them as ``static`` (:mod:`jaxneg.registry`). Every other field, shapes
#: included, must be equal.
MEMBERS = (
    MemberField("seed", "seed", np.int32),
    MemberField("loss.temperature", "temperature"),
    MemberField("loss.bias", "bias"),
    MemberField("optimizer.learning_rate", "learning_rate"),
    MemberField("optimizer.weight_decay", "weight_decay"),
    MemberField("optimizer.momentum", "momentum"),
    MemberField("moco.momentum", "moco_momentum"),
    MemberField("moco.queue_size", "queue_size", np.int32),  # queues of any length > 0 share a program
    MemberField("negatives.subsample", "subsample", np.int32),  # any n > 0 shares a program
    MemberField("negatives.memory", "memory_size", np.int32),   # banks of any size > 0 share a program
    MemberField("negatives.memory_from", "memory_from", np.int32),
    MemberField("negatives.instance_momentum", "instance_momentum"),
    MemberField("negatives.proximal", "proximal"),
    MemberField("model.centre_momentum", "centre_momentum"),
    MemberField("sampler.num_negatives", "num_negatives", np.int32),  # of sampler.max_negatives: one program
    MemberField("progress"),
)
MEMBER_FIELDS = tuple(m.field for m in MEMBERS)


def _float_kwargs(config) -> dict:
    """The loss keywords that may be traced per member: its float ``loss.kwargs`` that are not ``static``."""
    static = set(LOSSES.info(config.loss.name).static) if config.loss.name in LOSSES else set()  # (validated later)
    return {k: v for k, v in config.loss.kwargs.items() if isinstance(v, float) and k not in static}


def group_key(config: ml_collections.ConfigDict) -> str:
    """Configs with equal keys can run as members of one program (see :data:`MEMBERS`)."""
    flat = rundir.flat(config_json(config))
    for field in MEMBER_FIELDS:
        flat.pop(field, None)
    for k in _float_kwargs(config):
        flat[f"loss.kwargs.{k}"] = "<float>"
    flat["moco.queue"] = bool(config.moco.queue_size)  # queues of any length share a program; none does not
    flat["negatives.subsampled"] = bool(config.negatives.subsample)
    flat["negatives.bank"] = bool(config.negatives.memory)
    flat["sampler.depth"] = config.sampler.max_negatives or config.sampler.num_negatives  # the negatives' shape
    return json.dumps(flat, sort_keys=True, default=str)


def traced_loss_kwargs(configs) -> tuple:
    """The float ``loss.kwargs`` whose values differ between ``configs`` (traced per member)."""
    names = sorted(_float_kwargs(configs[0]))
    return tuple(k for k in names if len({c.loss.kwargs[k] for c in configs}) > 1)


def hparams(config: ml_collections.ConfigDict, loss_kwargs: tuple = ()) -> dict:
    """The member's per-run values, as the arrays the step traces (stacked over members)."""
    out = {m.name: m.dtype(config_lib.get_field(config, m.field)) for m in MEMBERS if m.name}
    out["loss_kwargs"] = {k: np.float32(config.loss.kwargs[k]) for k in loss_kwargs}
    return out


def _stack(trees, pad_to=None):
    """Stack members' trees along a new axis 0; arrays of different lengths (MoCo queues, memory banks)
    are zero-padded at the end of each axis to the longest, or to ``pad_to`` (:func:`_padded_shapes` of
    the whole group, so every pass of a group has the compiled step's shapes; :func:`_member` trims
    them back)."""
    def stack(*xs, shape=None):
        xs = [np.asarray(x) for x in xs]
        shape = tuple(max(dims) for dims in zip(*(x.shape for x in xs))) if shape is None else tuple(shape)
        if all(x.shape == shape for x in xs):
            return np.stack(xs)
        return np.stack([np.pad(x, [(0, m - n) for n, m in zip(x.shape, shape)]) for x in xs])

    if pad_to is None:
        return jax.tree.map(stack, *trees)
    return jax.tree.map(lambda shape, *xs: stack(*xs, shape=[int(d) for d in shape]), pad_to, *trees)


def _padded_shapes(trees):
    """The largest shape of each leaf over ``trees`` (members' states), as int arrays (leaves themselves)."""
    return jax.tree.map(lambda *xs: np.array([max(d) for d in zip(*(np.shape(x) for x in xs))], np.int64), *trees)


def _member(tree, i, like=None):
    """Member ``i`` of a stacked tree, trimmed to the shapes of ``like`` (its own state) when given."""
    if like is None:
        return jax.tree.map(lambda x: x[i], tree)
    return jax.tree.map(lambda x, y: x[i][tuple(slice(0, n) for n in np.shape(y))], tree, like)


# ----------------------------------------------------------------------------- optimizer and step


def make_optimizer(c: ml_collections.ConfigDict, hp: dict | None = None):
    """``(tx, lr)``: the optax transformation and the learning rate of each step.

    ``hp`` (inside the step): the member's traced learning rate, weight decay and momentum,
    which then replace the config's values; the structure of the optimiser state does not
    depend on them. With ``optimizer.accumulate = k > 1`` the gradients of ``k`` consecutive
    steps are averaged into one update (``optax.MultiSteps``; each step's negatives stay
    within its own batch), and the schedule runs over the ``steps / k`` updates.
    """
    o = c.optimizer
    peak = o.learning_rate if hp is None else hp["learning_rate"]
    wd = o.weight_decay if hp is None else hp["weight_decay"]
    momentum = o.momentum if hp is None else hp["momentum"]
    k = o.accumulate
    updates = c.steps // k
    warm = min(o.warmup_steps // k, updates - 1)
    if o.schedule == "cosine":  # the shape at peak 1, times the (possibly traced) peak
        shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(warm, 0), updates)
    else:
        shape = optax.join_schedules([optax.linear_schedule(0.0, 1.0, max(warm, 1)),
                                      optax.constant_schedule(1.0)], [max(warm, 1)])
    lr = lambda count: peak * shape(count)
    decay_mask = lambda params: {k: jax.tree.map(lambda _: k != LOGIT, v) for k, v in params.items()}
    if o.name == "adam":
        tx = optax.adam(lr)
    elif o.name == "adamw":
        tx = optax.adamw(lr, weight_decay=wd, mask=decay_mask)
    elif o.name == "sgd":
        tx = optax.chain(optax.add_decayed_weights(wd, decay_mask), optax.sgd(lr, momentum=momentum))
    else:  # lars, as in SimCLR
        tx = optax.lars(lr, weight_decay=wd, weight_decay_mask=decay_mask, momentum=momentum)
    if o.grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
    if k > 1:
        return optax.MultiSteps(tx, every_k_schedule=k), lambda step: lr(step // k)
    return tx, lr


def make_step(setup: Setup):
    """The jitted step of a group ``(states, batches, step, consts, hps) -> (states, metrics)``.

    ``states``, ``batches`` (``[M, B, ...]``, sharded over devices along ``B``) and ``hps``
    carry a leading member axis ``M``; each member's update is the single-run step, mapped
    with ``jax.vmap`` inside ``jax.shard_map``.
    """
    c = setup.config
    task = tasks.get(c.task)
    encode = task.make_encode(setup)
    objective = task.make_objective(setup)

    def one(state, batch, step, consts, hp):
        tx, _ = make_optimizer(c, hp)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(hp["seed"]), step), jax.lax.axis_index(AXIS))
        k_view, k_neg, k_enc = jax.random.split(key, 3)
        inputs, extra, shared, fixed = task.inputs(setup, (k_view, k_neg), state, dict(batch, step=step), consts,
                                                   hp)  # StepInputs
        extra = dict(extra, step=step)
        diagnostics = extra.pop("diagnostics", {})
        with_fixed = (lambda reps: reps) if fixed is None else (lambda reps: (reps[0], reps[1], fixed))
        params = state["params"]
        lp = params.get(LOGIT)
        if c.gradcache_chunk:  # (config_lib rules out shared negatives here)
            vg = gradcache.value_and_grad(encode, lambda reps, lp_=None: (objective(with_fixed(reps), lp_, extra, hp),
                                                                          reps[0]),
                                          chunk_size=c.gradcache_chunk, has_aux=True, axis_name=AXIS)
            (loss, extra["embeddings"]), (g_enc, g_lp) = vg(encoder_params(params), inputs, k_enc, lp)
            grads = dict(g_enc, **({LOGIT: g_lp} if lp is not None else {}))
        else:
            def total(params):
                enc = encoder_params(params)
                reps = encode(enc, inputs, k_enc)
                if shared is not None:  # popularity: one set of negatives [K] shared by the batch
                    reps = (reps[0], reps[1], embed(*doc_tower(setup, enc), shared))
                return objective(with_fixed(reps), params.get(LOGIT), extra, hp), reps[0]

            (loss, extra["embeddings"]), grads = jax.value_and_grad(total, has_aux=True)(params)
        diagnostics.update(task.diagnose(setup, state, extra, hp))
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        new = task.after_step(setup, dict(state, params=new_params, opt_state=opt_state), new_params, extra, hp)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **{f"diag/{k}": v for k, v in diagnostics.items()}}
        if lp is not None:
            metrics["temperature"] = 1.0 / models.logit_scale(lp, c.loss.max_logit_scale)
        return new, metrics

    def group(states, batches, step, consts, hps):
        return jax.vmap(one, in_axes=(0, 0, None, None, 0))(states, batches, step, consts, hps)

    def specs(tree, spec):
        return jax.tree.map(lambda _: spec, tree)

    def step_fn(states, batches, step, consts, hps):
        f = jax.shard_map(group, mesh=setup.mesh,
                          in_specs=(specs(states, P()), specs(batches, P(None, AXIS)), P(), specs(consts, P()),
                                    specs(hps, P())),
                          out_specs=P())
        return f(states, batches, step, consts, hps)

    return jax.jit(step_fn, donate_argnums=0)


# ----------------------------------------------------------------------------- the run


config_json = config_lib.config_json


def check_workdir(workdir: str, cj: dict) -> None:
    """A work directory that holds a run of another config is refused, naming the differing fields."""
    path = os.path.join(workdir, rundir.CONFIG)
    if not os.path.exists(path):
        return
    old = rundir.read_json(path)
    if old != cj:
        diff = rundir.config_diff(old, cj)
        raise config_lib.ConfigError(f"workdir {workdir} holds a run of a different config (fields {diff}); "
                                     f"use another workdir")


class _Writer:
    """A run's outputs: ``metrics.jsonl`` and TensorBoard (the same rows), and ``log.txt`` (progress
    lines, also to stderr with ``echo``). Only the primary process (process 0) writes."""

    def __init__(self, workdir: str, primary: bool, echo: bool):
        self.workdir, self.primary, self.echo = workdir, primary, echo
        self.jsonl = self.tb = None

    def open(self, start: int) -> None:
        """Rewind ``metrics.jsonl`` (and TensorBoard) to step ``start`` and open them for appending."""
        if self.primary:
            rundir.truncate_metrics(self.workdir, start)
            self.jsonl = open(os.path.join(self.workdir, rundir.METRICS), "a")
            self.tb = _tb_writer(self.workdir, start)

    def row(self, row: dict) -> None:
        """One logged step or evaluation ``{"step": ..., name: value, ...}``."""
        if self.jsonl is None:
            return
        self.jsonl.write(json.dumps(row, default=float) + "\n")
        self.jsonl.flush()
        for k, v in row.items():
            if k != "step":
                self.tb.add_scalar(k, v, row["step"])
        self.tb.flush()

    def line(self, text: str) -> None:
        """A progress line: appended to ``log.txt``; also to stderr for a run of its own."""
        if not self.primary:
            return
        with open(os.path.join(self.workdir, rundir.LOG), "a") as f:
            f.write(text + "\n")
        if self.echo:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        for f in (self.jsonl, self.tb):
            if f is not None:
                f.close()
        self.jsonl = self.tb = None


class Clock:
    """The time account of one program: seconds per phase, the rest (logging, host glue) as ``other``.

    ==============  ==================================================================
    ``data``        building the run (loading the dataset, the models) and each step's
                    host batch (views' inputs, stacking, transfer to the devices)
    ``setup``       initialising or restoring the members' states
    ``compile``     lowering and compiling the step (a persistent-cache hit is a load)
    ``steps``       running the steps (dispatch and the wait for their losses)
    ``evaluation``  the evaluations (at init, mid-run, final)
    ``checkpoints`` writing checkpoints
    ``other``       the rest of the program's wall time
    ==============  ==================================================================
    """

    PHASES = ("data", "setup", "compile", "steps", "evaluation", "checkpoints", "other")

    def __init__(self):
        self.t0 = time.perf_counter()
        self.seconds = dict.fromkeys(self.PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t

    def account(self) -> dict:
        """``{phase: seconds}`` so far, ``other`` being the wall time not in a phase, and ``total``."""
        total = time.perf_counter() - self.t0
        out = dict(self.seconds)
        out["other"] = max(0.0, total - sum(v for k, v in out.items() if k != "other"))
        out["total"] = total
        return out

    def line(self) -> str:
        acc = self.account()
        return (f"time: {acc['total']:.1f} s = " + ", ".join(f"{k} {acc[k]:.1f} s" for k in self.PHASES))


class _Window:
    """The running (sum, count) of the losses since the last log line. It is checkpointed with the
    state, so a resumed run logs the same mean losses as an uninterrupted one."""

    def __init__(self):
        self.sum, self.count = 0.0, 0

    def add(self, loss: float) -> None:
        self.sum, self.count = self.sum + loss, self.count + 1

    def take(self) -> float:
        """The mean since the last call; starts a new window."""
        mean = self.sum / self.count
        self.sum, self.count = 0.0, 0
        return mean

    def array(self) -> np.ndarray:
        return np.array([self.sum, self.count], np.float64)

    def load(self, a) -> None:
        self.sum, self.count = float(a[0]), int(a[1])


class _Member:
    """One run of a group: its config, directory, checkpoints, lock, loss window and outcome."""

    def __init__(self, setup: Setup, config, workdir: str, echo: bool):
        self.config, self.workdir = config, workdir
        self.setup = setup.member(config)
        self.primary = jax.process_index() == 0
        self.lr = make_optimizer(config)[1]
        self.out = _Writer(workdir, self.primary, echo)
        self.window = _Window()
        self.result = self.ckpt = self.lock = self.last_ckpt = None
        self.start = 0

    def close(self) -> None:
        self.out.close()
        if self.ckpt is not None:
            self.ckpt.close()
        if self.lock is not None:
            self.lock.release()
        self.ckpt = self.lock = None


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run (or resume, or return the finished result of) the experiment in ``workdir``.

    Raises :class:`experiments.config_lib.ConfigError` for a bad config or a work directory of
    another config, before anything is created, loaded into memory or compiled, and
    :class:`NonFiniteLoss` when the loss stops being finite.
    """
    if not isinstance(config, ml_collections.ConfigDict):
        what = "a sweep config" if type(config).__name__ == "Sweep" else f"a {type(config).__name__}"
        raise config_lib.ConfigError(f"this is {what}, not a run config; run sweeps with "
                                     f"python -m experiments.sweep --config FILE --workdir DIR")
    (result,) = train_group([config], [workdir], echo=True)
    if result["status"] != "finished":
        raise NonFiniteLoss(result["step"], float(result["loss"]), result["last_checkpoint"])
    return result


def step_width(requested: int, members: int, task: str | None = None) -> int:
    """How many members one compiled step trains at once (``vmap`` over them): ``requested`` if > 0,
    else 1 on CPU and all of them on an accelerator, or on CPU too where the task says its vmapped
    step is the faster there (``Task.vmap_on_cpu``: the pairs task's bag of tokens, 1.8x faster for 8
    members of part 3 of the main job; the CNN below is the other way).

    On an accelerator one step of many small members keeps the device busy where one member at a
    time would leave it idle. On CPU the arithmetic is already the bottleneck, and XLA:CPU runs the
    vmapped step 1.3 to 1.6x slower per member than the single-member step (grouped convolutions;
    BENCHMARKS.md, issue 22), so the members pass one at a time through the same compiled
    single-member step: still one compilation per program. A last pass with fewer members
    (``requested`` not dividing the members) compiles its own step.
    """
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 0:
        raise config_lib.ConfigError(f"members_per_step must be an int >= 0 (0: the platform's default), "
                                     f"got {requested!r}")
    if requested:
        return min(requested, members)
    if jax.default_backend() == "cpu" and not (task and tasks.get(task).vmap_on_cpu):
        return 1
    return members


def train_group(configs, workdirs, *, echo: bool = False, members_per_step: int = 0) -> list[dict]:
    """Train ``configs`` (equal :func:`group_key`) as members of one program; one result per member.

    Each member runs in its own ``workdirs[i]`` exactly as :func:`train` would run it alone:
    a finished member returns its ``result.json``, the others resume from their newest good
    checkpoint (members at different steps run as separate programs). A member whose loss
    stops being finite is stopped alone: its result is ``{"status": "failed", "step", "loss",
    "last_checkpoint"}`` (also ``failed.json``) and the other members go on. ``echo``: also
    print each member's progress lines to stderr.

    The step is compiled once; ``members_per_step`` members at a time pass through it
    (:func:`step_width`: 0 = 1 on CPU, all on an accelerator). Each pass is a program of its
    own in the time account (the first also carries the group's data and setup).

    Raises :class:`~experiments.config_lib.ConfigError` for a bad config, configs that cannot
    share a program, or a work directory of another config, before anything is created.
    """
    if len(configs) != len(workdirs) or not configs:
        raise config_lib.ConfigError(f"train_group: needs as many workdirs as configs (>= 1), got "
                                     f"{len(configs)} configs and {len(workdirs)} workdirs")
    workdirs = [os.path.abspath(w) for w in workdirs]
    if len(set(workdirs)) != len(workdirs):
        raise config_lib.ConfigError("train_group: every member needs its own workdir")
    step_width(members_per_step, len(configs))  # checked here, before anything is created
    keys = {group_key(c) for c in configs}
    if len(keys) > 1:
        diff = rundir.config_diff(config_json(configs[0]), next(config_json(c) for c in configs
                                                                if group_key(c) != group_key(configs[0])))
        raise config_lib.ConfigError(f"train_group: members may differ only in {MEMBER_FIELDS} and float "
                                     f"loss.kwargs; these differ in {[d for d in diff if d not in MEMBER_FIELDS]}")
    clock = Clock()
    try:
        for c, w in zip(configs, workdirs):
            check_workdir(w, config_json(c))
        with clock("data"):
            setup = build(configs[0])  # validates first: bad configs fail here, before any compute
        for c in configs[1:]:
            config_lib.validate(c, setup.mesh.size)
    except config_lib.ConfigError:
        raise
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from e
    members = [_Member(setup, c, w, echo) for c, w in zip(configs, workdirs)]
    todo = []
    for m in members:
        path = os.path.join(m.workdir, rundir.RESULT)
        if os.path.exists(path):
            m.result = rundir.read_json(path)
        else:
            todo.append(m)
    if todo:
        traced = traced_loss_kwargs([m.config for m in todo])
        states = {}
        try:
            for m in todo:
                if m.primary:  # only now: a config that fails validation leaves no directory
                    try:  # a second launch into a run directory in use fails here, naming the holder
                        m.lock = stopping.Lock(m.workdir, "experiments.train").acquire()
                    except stopping.Busy as e:
                        raise config_lib.ConfigError(str(e)) from None
                    rundir.write_json(os.path.join(m.workdir, rundir.CONFIG), config_json(m.config))
                with clock("setup"):
                    states[m.workdir] = _restore(m)
            by_start = {}
            for m in todo:
                by_start.setdefault(m.start, []).append(m)
            compiled = {}  # members per step -> the compiled step, shared by the passes
            pad_to = _padded_shapes(list(states.values()))  # every pass stacks to the same shapes
            for start, group in sorted(by_start.items()):
                size = step_width(members_per_step, len(group), group[0].config.task)
                for i in range(0, len(group), size):
                    passing = group[i:i + size]
                    _run(setup, passing, [states.pop(m.workdir) for m in passing], start, traced, clock, compiled,
                         bar=echo and len(configs) == 1, group_name=os.path.basename(group[0].workdir), pad_to=pad_to)
                    clock = Clock()  # the next pass is a program of its own
        finally:
            for m in todo:
                m.close()
    return [m.result for m in members]


def _init_state(m: _Member) -> dict:
    key = jax.random.key(m.config.seed)
    params = init_params(m.setup, key)
    tx, _ = make_optimizer(m.config)
    state = {"params": params, "opt_state": tx.init(params)}
    state.update(tasks.get(m.config.task).init_state(m.setup, params, key))
    return state


def _restore(m: _Member) -> dict:
    """The member's state: fresh, or from its newest good checkpoint (sets ``m.start``, the loss window)."""
    state = _init_state(m)
    m.ckpt = Checkpoints(os.path.join(m.workdir, rundir.CHECKPOINTS), m.config.keep_checkpoints, m.primary,
                         asynchronous=jax.process_count() == 1)  # (multi-host saves synchronise the processes)
    restored = m.ckpt.restore({**state, "log_window": np.zeros(2, np.float64)}, optional=("log_window",))
    if restored is None:
        return state
    m.start = m.last_ckpt = restored[0]
    state = dict(restored[1])
    window = state.pop("log_window", None)  # None: a checkpoint written without it
    if window is not None:
        m.window.load(window)
    return state


def _run(setup: Setup, members: list, states: list, start: int, traced: tuple, clock: Clock, compiled: dict,
         bar: bool = False, group_name: str = "", pad_to=None) -> None:
    """Train ``members`` (all at step ``start``) to the end as one program; sets each ``m.result``.

    The loop: refresh (host-side task state), step, log, checkpoint, evaluate, then finish. ``clock``
    keeps the program's time account (:class:`Clock`), written to each result and log. ``compiled``:
    ``{members: compiled step}``, filled on first use and shared by the passes of a group. ``bar``: a
    progress bar (a run of its own). ``group_name``: the program's name in each result (``program``: its
    group's first member's directory); each result also names its pass (``pass``: this call's first member). ``pad_to``: the shapes the
    stacked states are padded to (:func:`_stack`).
    """
    c = members[0].config
    for m in members:
        m.out.line(f"run {m.workdir}: " + (f"resuming from the checkpoint of step {start} of {c.steps}" if start
                                           else f"starting, {c.steps} steps")
                   + (f" (one of {len(members)} members of a vectorised group)" if len(members) > 1 else ""))
        m.out.open(start)
    with clock("evaluation"):
        init_eval = {m.workdir: evaluate(m.setup, init_params(m.setup, jax.random.key(m.config.seed)))
                     for m in members} if c.eval.at_init else {}
    with clock("setup"):
        program = _Program(setup, members, states, traced, start, clock, compiled, bar, group_name, pad_to)
    wall0 = time.perf_counter()
    try:
        for step in range(start, c.steps):
            program.refresh(step)
            program.step(step)
            count = step + 1
            evaluating = c.eval_every and count % c.eval_every == 0
            if not program.check(keep=0 if (count % c.log_every == 0 or count % c.checkpoint_every == 0 or evaluating
                                            or count == c.steps) else 1):
                return  # every member failed
            if count % c.log_every == 0 or count == c.steps:
                program.log(count)
            if count % c.checkpoint_every == 0 or count == c.steps:
                with clock("checkpoints"):
                    program.checkpoint(count)
            if c.eval_every and count % c.eval_every == 0 and count != c.steps:
                with clock("evaluation"):
                    program.evaluate(count)
        program.finish(time.perf_counter() - wall0, init_eval)
    finally:
        program.close()


class _Program:
    """The device side of :func:`_run`: the members' stacked state, their hyperparameters, the
    compiled step, and which members are still active."""

    def __init__(self, setup: Setup, members: list, states: list, traced: tuple, start: int, clock: Clock,
                 compiled: dict, bar: bool, name: str, pad_to=None):
        c = members[0].config
        self.name = name or os.path.basename(members[0].workdir)
        self.clock, self.compiled = clock, compiled
        self.setup, self.members, self.config = setup, members, c
        self.task = tasks.get(c.task)
        self.replicated = NamedSharding(setup.mesh, P())
        self.batch_sharding = NamedSharding(setup.mesh, P(None, AXIS))
        self.shapes = [jax.tree.map(lambda x: np.zeros(np.shape(x), bool), s) for s in states]  # each member's own
        self.pad_to = pad_to
        self.states = jax.device_put(_stack(states, pad_to), self.replicated)
        self.hps = jax.device_put(_stack([hparams(m.config, traced) for m in members]), self.replicated)
        self.consts = jax.device_put(self.task.consts(setup), self.replicated)
        self.bar = _progress(c, start) if bar else None
        self.active = list(range(len(members)))
        self.metrics = None
        self.unchecked = []  # (step, losses) dispatched, not yet read
        self.t0, self.steps_in_window = time.perf_counter(), 0

    def refresh(self, step: int) -> None:
        """Host-side task updates (the mined index) when the task's schedule says so, member by member."""
        every = self.task.refresh_every(self.config)
        if step > 0 and every and step % every == 0:
            out = [self.task.refresh(m.setup, _member(self.states, i, self.shapes[i]), step)
                   for i, m in enumerate(self.members)]
            self.states = jax.device_put(_stack(out, self.pad_to), self.replicated)

    def step(self, step: int) -> None:
        """Dispatch one step of every member (asynchronously: :meth:`check` reads its losses)."""
        with self.clock("data"):
            by_seed = {seed: self.task.host_batch(self.setup, seed, step) for seed in {m.config.seed for m in self.members}}
            batch = _stack([by_seed[m.config.seed] for m in self.members])  # members of one seed share its batch
            batch = jax.tree.map(lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)
        args = (self.states, batch, jnp.int32(step), self.consts, self.hps)
        size = len(self.members)
        if size not in self.compiled:
            with self.clock("compile"):
                self.compiled[size] = make_step(self.setup.member(self.config)).lower(*args).compile()
        with self.clock("steps"):
            self.states, self.metrics = self.compiled[size](*args)
        self.unchecked.append((step, self.metrics["loss"]))

    def check(self, keep: int = 0) -> bool:
        """Read the losses of the dispatched steps but the newest ``keep``; a member whose loss is not
        finite stops alone. False: no member is left.

        With ``keep=1`` the host reads step ``t - 1``'s losses while step ``t`` runs, and prepares step
        ``t + 1``'s batch meanwhile: the device never waits on the host between steps. The loop reads
        every loss (``keep=0``) before it logs, checkpoints or evaluates, so a checkpoint never holds
        a step whose loss was not seen to be finite.
        """
        with self.clock("steps"):
            while len(self.unchecked) > keep:
                step, loss = self.unchecked.pop(0)
                losses = np.asarray(loss, np.float64)
                for i in list(self.active):
                    if not np.isfinite(losses[i]):
                        _fail(self.members[i], step, losses[i])
                        self.active.remove(i)
                    else:
                        self.members[i].window.add(float(losses[i]))
                self.steps_in_window += 1
                if self.bar is not None:
                    self.bar.update(1)
        return bool(self.active)

    def log(self, count: int) -> None:
        """Each active member's mean loss since the last log line, learning rate, gradient norm, rate."""
        rate = self.steps_in_window / (time.perf_counter() - self.t0)
        grad_norm = np.asarray(self.metrics["grad_norm"])
        temps = np.asarray(self.metrics["temperature"]) if "temperature" in self.metrics else None
        for i in self.active:
            m = self.members[i]
            row = {"step": count, "loss": m.window.take(), "learning_rate": float(m.lr(count - 1)),
                   "grad_norm": float(grad_norm[i]), "steps_per_sec": rate}
            if temps is not None:
                row["temperature"] = float(temps[i])
            diagnostics = self.diagnostics(i)
            row.update({f"diag/{k}": v for k, v in diagnostics.items()})
            m.out.row(row)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{row['loss']:.4f}")
            else:  # no bar (sweeps, logs): one line per logged step instead
                norm = (f"  mean norm {diagnostics['embedding_mean_norm']:.3f}" if "embedding_mean_norm" in diagnostics
                        else "")
                m.out.line(f"step {count}/{self.config.steps}  loss {row['loss']:.4f}  lr {row['learning_rate']:.3g}"
                           f"{norm}  {rate:.1f} steps/s")
        self.t0, self.steps_in_window = time.perf_counter(), 0

    def checkpoint(self, count: int) -> None:
        """Each active member's state and loss window at step ``count``, written in the background
        (:class:`~experiments.checkpoints.Checkpoints` ``asynchronous``) from a host copy of the state."""
        host = jax.tree.map(lambda x: np.array(x, copy=True), jax.device_get(self.states))  # never a view of a
        # device buffer that the next step (which donates the states) may reuse
        with stopping.critical():  # a stop waits for the members' checkpoints of this step
            for i in self.active:
                m = self.members[i]
                m.ckpt.save(count, {**_member(host, i, self.shapes[i]), "log_window": m.window.array()})
                m.last_ckpt = count

    def diagnostics(self, i: int) -> dict:
        """Member ``i``'s step diagnostics at the last step (the task's ``extra["diagnostics"]``: the
        negatives' class overlap, the bank's fill and age), reported with each evaluation."""
        return {k[len("diag/"):]: float(np.asarray(v)[i]) for k, v in (self.metrics or {}).items()
                if k.startswith("diag/")}

    def evaluate(self, count: int) -> None:
        """A mid-run evaluation of each active member, logged at step ``count``."""
        evals = evaluate_members([m.setup for m in self.members], self.states["params"])
        for i in self.active:
            metrics = {**evals[i], **self.diagnostics(i)}
            self.members[i].out.row({"step": count, **{f"eval/{k}": v for k, v in metrics.items()}})

    def finish(self, wall: float, init_eval: dict) -> None:
        """The final evaluation and ``result.json`` of each active member."""
        c = self.config
        finals = {}
        with self.clock("evaluation"):
            evals = evaluate_members([m.setup for m in self.members], self.states["params"])
            for i in self.active:
                finals[i] = {**evals[i], **self.diagnostics(i)}
        with self.clock("checkpoints"):  # the last one was written while the final evaluation ran
            for i in self.active:
                self.members[i].ckpt.wait()
        account = self.clock.account()
        for i in self.active:
            m = self.members[i]
            params = _member(self.states["params"], i)
            final = finals[i]
            m.out.row({"step": c.steps, **{f"eval/{k}": v for k, v in final.items()}})
            m.out.line(f"program of {len(self.members)} member(s), " + self.clock.line())
            result = {"status": "finished", "steps": c.steps, "eval": final, "time_account": account,
                      "program": self.name, "pass": os.path.basename(self.members[0].workdir),
                      "final_loss": rundir.last_loss(m.workdir) if m.primary else None,
                      "num_devices": self.setup.mesh.size,
                      "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
                      "wall_seconds": wall, "members": len(self.members), "resumed_from": self.members[0].start or None}
            if m.workdir in init_eval:
                result["init_eval"] = init_eval[m.workdir]
            with stopping.critical():
                if m.primary:
                    rundir.write_json(os.path.join(m.workdir, rundir.RESULT), result)
                m.result = result
            m.out.line("finished: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items() if isinstance(v, float)))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fail(m: _Member, step: int, loss: float) -> None:
    m.result = {"status": "failed", "error": "non_finite_loss", "step": step, "loss": str(loss),
                "last_checkpoint": m.last_ckpt}
    if m.primary:
        rundir.write_json(os.path.join(m.workdir, rundir.FAILED),
                          {"status": "non_finite_loss", "step": step, "loss": str(loss), "last_checkpoint": m.last_ckpt})
    m.out.line(f"error: loss is {loss} at step {step}; stopped. Last good checkpoint: step {m.last_ckpt}")


def _tb_writer(workdir, start):
    from tensorboardX import SummaryWriter

    return SummaryWriter(os.path.join(workdir, rundir.TENSORBOARD), purge_step=start or None)


def _progress(c, start):
    if not c.progress or jax.process_index() != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=c.steps, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache (unless the user configured one), so a relaunch
    of a run or sweep loads its compiled programs instead of compiling again.

    Directory: ``$JAXNEG_COMPILATION_CACHE``, else ``~/.cache/jaxneg/xla``; ``JAXNEG_COMPILATION_CACHE=0``
    turns it off. Returns the directory in use (None: off).
    """
    where = os.environ.get("JAXNEG_COMPILATION_CACHE", "")
    if where == "0":
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    where = where or os.path.join(os.path.expanduser("~"), ".cache", "jaxneg", "xla")
    os.makedirs(where, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return where


if __name__ == "__main__":
    from experiments import cli

    cli.train_command()
