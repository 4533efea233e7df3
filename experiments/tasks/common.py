"""What every task shares: the run's :class:`Setup`, models, parameters, encoding and the loss call.

The parameter tree of a run is ``{"query": ..., "doc": ... (a second tower), "logit": ...
(learned temperature / SigLIP scale and bias)}``; :func:`encoder_params` and
:func:`doc_tower` are the one place that knows it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxneg import LOSSES, data, models, parallel
from jaxneg.registry import Registry
from jaxneg import evaluation

AXIS = parallel.DATA
#: the loss inputs (``jaxneg.LOSSES`` metadata) that :func:`make_objective` knows how to call
TRAINED_INPUTS = ("pair", "views", "labelled", "sampled")
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


class StepData(NamedTuple):
    """The arrays one member's step passes between its parts (inside ``shard_map``): set by ``Task.inputs``,
    read by the objective, ``diagnose`` and ``after_step``; a field a task does not use stays None. A
    misspelt field fails when the step is traced.

    ==================  ============================================================================
    ``ids``             ``[B]`` the examples' ids (views: the banks' provenance, the labelled losses)
    ``labels``          ``[B]`` views: class labels (a supervised loss; else only counted); pairs: the
                        positives' duplicate groups
    ``doc_id``          ``[B]`` pairs: the positives' corpus rows
    ``centre``          views: the running centre the step's embeddings are centred by
    ``keys``            MoCo: the key encoder's centred keys of view 2 (``keys_2``: of view 1)
    ``mask``            ``[rows, columns]`` bool: gathered in-batch (and bank) columns dropped from
                        each anchor's negatives
    ``negatives_mask``  ``[B, K]`` (pairs) or ``[S]`` (a bank's share) bool: extra negatives kept
    ``log_q``, ``positive_log_q``, ``negative_ids``: the popularity sampler's correction (Yi et al.)
    ``row_labels``, ``column_labels``: views, the classes of the anchors and of every gathered
                        candidate column (in-batch and bank; -1 unknown), for the negatives' diagnostics
    ``negative_groups`` ``[B, K]`` pairs: the duplicate groups of the drawn or mined negatives
    ``diagnostics``     ``{name: scalar}`` logged as step metrics (popped by the step)
    ``step``            the step (set by the step)
    ``embeddings``      the step's view-1 (query) embeddings (set by the step after the gradient)
    ``reps``            ``(z_a, z_b, z_neg)`` as the objective received them (set by the step; z_neg:
                        per-query negatives, a shared set, or a bank's share; None without)
    ==================  ============================================================================
    """

    ids: Any = None
    labels: Any = None
    doc_id: Any = None
    centre: Any = None
    keys: Any = None
    keys_2: Any = None
    mask: Any = None
    negatives_mask: Any = None
    log_q: Any = None
    positive_log_q: Any = None
    negative_ids: Any = None
    row_labels: Any = None
    column_labels: Any = None
    negative_groups: Any = None
    diagnostics: Any = None
    step: Any = None
    embeddings: Any = None
    reps: Any = None


class StepInputs(NamedTuple):
    """What a task hands the step for one member (inside ``shard_map``): ``Task.inputs``' result."""

    encoder: tuple       # (a, b, per-query negative inputs or None): what the encoder sees
    extra: StepData      # arrays the loss, diagnose and after_step read
    shared: Any = None   # negative inputs shared by the whole batch, [K, ...] (the popularity sampler)
    fixed: Any = None    # negative embeddings that take no gradient (the MoCo queue)


@dataclasses.dataclass(frozen=True)
class MemberField:
    """A config field whose value may differ between the members of one compiled program.

    ``name``: its field in the member's hyperparameters (``experiments.train.HParams``, ``hp.<name>``),
    which reach the step as traced arrays of ``dtype``; ``None``: a field the step never reads (it only
    shapes output). Inside the step a task's config holds none of these values (``experiments.train.
    step_config``): it reads ``hp``.
    """

    field: str
    name: str | None = None
    dtype: type = np.float32


@dataclasses.dataclass(frozen=True)
class Task:
    """What a run trains on (``config.task``): a record of functions of the run's :class:`Setup`.

    ==============================================  =================================================
    ``needs``                                       dataset fields it reads
    ``corpus_id``                                   the field of the train and test splits that
                                                    addresses a corpus row (the corpus is loaded in
                                                    that id's order, :func:`jaxneg.data.in_id_order`,
                                                    so row ``i`` is id ``i``); None: no corpus
    ``validate(config, loss)``                      the task's own config rules (``loss``: the loss'
                                                    registry entry); raises ``ValueError`` naming the
                                                    field; called by ``config_lib.validate``
    ``host_batch(setup, seed, step)``               this process' share of batch ``step`` (NumPy), a
                                                    pure function of (seed, step)
    ``example_inputs(setup)``                       (query input, doc input or None) of one example,
                                                    to initialise the models
    ``consts(setup)``                               device constants every step reads (corpus, counts)
    ``init_state(setup, params, key)``              state beside params / opt_state (index, queue, key
                                                    encoder)
    ``make_encode(setup)``                          ``encode(enc_params, inputs, key) -> (z_a, z_b,
                                                    z_neg)``
    ``make_objective(setup)``                       ``objective(reps, logit_params, extra, hp) -> loss``
    ``inputs(setup, keys, state, batch, consts, hp)``  inside ``shard_map``, one member:
                                                    :class:`StepInputs` (``batch["step"]``: the step;
                                                    ``extra.diagnostics``: scalars logged as  
                                                    step metrics)
    ``after_step(setup, state, params, extra, hp)``  state updates after the optimizer step (queue,
                                                    EMA, memory bank, centre); ``extra`` also holds
                                                    the step (``step``) and the step's view-1 (query)
                                                    embeddings (``embeddings``; with gradient caching
                                                    too)
    ``evaluate(setup, params)``                     downstream metrics of ``params``
    ``refresh(setup, state, step)``,                host-side state updates between steps (the mined
    ``refresh_every(config)``                       index) and their period in steps (0: never)
    ``raw_input(setup)``                            the evaluation's metrics of the raw inputs (the
                                                    baseline a run must beat; {}: none), and str
                                                    notes for the report (``method``: what it is)
    ``evaluate_members(setup, params, seeds)``      :meth:`evaluate` of members stacked ``[M, ...]``
                                                    (seeds ``[M]``) in one vmapped call, a list of
                                                    dicts (None: one member at a time)
    ``output_bias(config)``                         whether the projection head's last layer has a
                                                    bias (False where the loss input is centred by
                                                    the batch mean, which makes it redundant)
    ``vmap_on_cpu``                                 whether members train faster vmapped than one at
                                                    a time on CPU (``train.step_width``)
    ``config``                                      the task's own config fields, ``{dotted name: default}``
                                                    (``config_lib.base_config`` adds them; a dict default is
                                                    a free keyword group; under another task they must
                                                    keep their defaults)
    ``members``                                     its :class:`MemberField` s (fields that may differ
                                                    between the members of one program)
    ``shape_key(config)``                           ``{name: value}``: what of its member fields fixes the
                                                    program's shapes (e.g. whether a queue exists at all)
    ``diagnose(setup, state, extra, hp)``           inside ``shard_map``, after the gradient: scalars
                                                    of the step's embeddings (``extra.embeddings``,
                                                    the state before the update), logged with the
                                                    step and reported with each evaluation
    ==============================================  =================================================
    """

    name: str
    needs: tuple
    corpus_id: str | None
    validate: Callable
    host_batch: Callable
    example_inputs: Callable
    consts: Callable
    init_state: Callable
    make_encode: Callable
    make_objective: Callable
    inputs: Callable
    after_step: Callable
    evaluate: Callable
    refresh: Callable = lambda setup, state, step: state
    refresh_every: Callable = lambda config: 0
    raw_input: Callable = lambda setup: {}
    evaluate_members: Callable | None = None
    diagnose: Callable = lambda setup, state, extra, hp: {}
    output_bias: Callable = lambda config: True
    vmap_on_cpu: bool = False
    config: Mapping = dataclasses.field(default_factory=dict)
    members: tuple = ()
    shape_key: Callable = lambda config: {}


#: the tasks by ``config.task`` name; a task module registers its :class:`Task` here
TASKS = Registry("task")


def register(task: Task) -> Task:
    """Register ``task`` under ``task.name`` (one line at the end of a task module)."""
    return TASKS.register(task.name)(task)


def all_tasks() -> list[Task]:
    """Every registered :class:`Task`, by name."""
    return [TASKS.get(name) for name in TASKS.names()]


def config_fields(task: Task) -> dict:
    """``{dotted field: default}``: the task's own config fields and those of its registered negative sources
    (:mod:`experiments.tasks.sources`; read afresh, so a source registered later joins in)."""
    from experiments.tasks import sources

    return {**task.config, **sources.config_fields(task.name)}


def member_fields(task: Task) -> tuple:
    """The task's :class:`MemberField` s and those of its registered negative sources."""
    from experiments.tasks import sources

    own = {m.field for m in task.members}
    return tuple(task.members) + tuple(m for m in sources.member_fields(task.name) if m.field not in own)


def get(name: str) -> Task:
    """The :class:`Task` of ``config.task``."""
    if name not in TASKS:
        raise ValueError(f"config.task={name!r} is not valid; valid values: {', '.join(map(repr, TASKS.names()))}")
    return TASKS.get(name)


def encoder_params(params: dict) -> dict:
    """The towers' parameters (everything but the logit parameters)."""
    return {k: v for k, v in params.items() if k != LOGIT}


def doc_tower(setup: Setup, enc: dict):
    """``(model, params)`` that encode documents: the second tower, else the query tower."""
    if "doc" in enc:
        return setup.doc_model, enc["doc"]
    return setup.query_model, enc["query"]


def init_params(setup: Setup, key) -> dict:
    """Fresh parameters of the member ``setup.config`` from ``key``."""
    c = setup.config
    kq, kd = jax.random.split(key)
    xq, xd = get(c.task).example_inputs(setup)
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
    scale = models.logit_scale(lp, c.loss.max_logit_scale) if lp is not None else 1.0 / hp.temperature
    if entry.scale == "logit_scale":
        bias = lp["bias"] if lp is not None and "bias" in lp else hp.bias
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
        kw = {**static, **hp.loss_kwargs, **_scale_kwargs(c, entry, lp, hp)}
        a, b, neg = reps
        if entry.inputs == "pair":
            if neg is not None:
                kw["negatives"] = neg
                if extra.negatives_mask is not None:
                    kw["negatives_mask"] = extra.negatives_mask
            if extra.mask is not None:  # pairs dropped from the anchors' negatives (negatives.candidates)
                kw["mask"] = extra.mask
            if c.loss.supervised and entry.labels:
                kw["labels"] = extra.labels
            value = fn(a, b, **kw, **ax)
        elif entry.inputs == "views":
            value = fn(jnp.stack([a, b], 1), extra.labels if c.loss.supervised else None, **kw, **ax)
        elif entry.inputs == "labelled":
            labels = extra.labels if c.loss.supervised else extra.ids
            value = fn(jnp.concatenate([a, b]), jnp.concatenate([labels, labels]), **kw)
        else:  # sampled: query, positive, negatives (+ the sampling correction where the loss takes it)
            if "log_q" in entry.keywords:
                kw.update(log_q=extra.log_q, positive_log_q=extra.positive_log_q, positive_ids=extra.doc_id,
                          negative_ids=extra.negative_ids)
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


def encode_all(model, params, x, chunk=1024, *, members: bool = False):
    """``(features, embeddings)`` of every row of ``x [N, ...]``, in chunks of ``chunk`` rows; with ``members``,
    of ``M`` models at once: ``params`` stacked ``[M, ...]`` and ``x [M, N, ...]`` (each member's own rows),
    outputs ``[M, N, ...]``."""
    f, axis = (_vmapped_apply(model), 1) if members else (apply_fn(model), 0)
    n = x.shape[axis]
    outs = [f(params, jnp.asarray(x[(slice(None),) * axis + (slice(i, i + chunk),)])) for i in range(0, n, chunk)]
    return jnp.concatenate([o[0] for o in outs], axis), jnp.concatenate([o[1] for o in outs], axis)


@functools.lru_cache(maxsize=16)
def _vmapped_apply(model):
    return jax.jit(jax.vmap(model.apply))


#: RankMe, jitted once (several small ops; run eagerly, their dispatch cost more than their arithmetic)
rankme = jax.jit(evaluation.rankme)


def pair_metric_values(key, z1, z2, candidates: int) -> dict:
    """The metrics of matched embedding pairs ``z1[i] <-> z2[i]`` every task reports, traced (scalars):
    alignment, uniformity and the contrastive accuracy among ``candidates`` (``jax.vmap`` it over members;
    jitted together, since run eagerly their dispatch cost more than their arithmetic)."""
    if candidates < 2:
        raise ValueError(f"the contrastive accuracy needs at least 2 candidates (eval.num_candidates, at most the "
                         f"{z1.shape[-2]} evaluated pairs), got {candidates}")
    return {"alignment": evaluation.alignment(z1, z2), "uniformity": evaluation.uniformity(z1),
            "contrastive_accuracy": evaluation._contrastive_hits(key, z1, z2, candidates)}


_pair_metric_values = jax.jit(pair_metric_values, static_argnums=3)


def pair_metrics(setup: Setup, z1, z2, key) -> dict:
    """:func:`pair_metric_values` of one run, as floats, among ``eval.num_candidates`` (at most ``N``)."""
    m = min(setup.config.eval.num_candidates, z1.shape[0])
    return {name: float(v) for name, v in _pair_metric_values(key, z1, z2, m).items()}


def mean_direction(z):
    """``mean_i z_i / |z_i|`` over the global batch (inside ``shard_map``), float32 ``[D]``: its length is
    about 0 for embeddings spread over the sphere and 1 when they all point one way."""
    from jaxneg._array import l2_normalize

    return jax.lax.pmean(jnp.mean(l2_normalize(z.astype(jnp.float32)), 0), AXIS)


def negative_mass(logits, candidates, groups: Mapping) -> dict:
    r"""The regime of one step's negatives (inside ``shard_map``): how the softmax spreads over them.

    For each anchor row ``r`` with candidate negatives ``N_r`` (``candidates [R, C]``, the positive
    excluded) and logits ``s_rc`` (``[R, C]``, the loss' scaled similarities), the negatives' distribution

        p_rc = exp(s_rc) / sum_{c' in N_r} exp(s_rc')           (c in N_r)

    gives ``negative_mass_<name> = mean_r sum_{c in N_r, groups[name]_rc} p_rc``, the share of the negative
    mass on each group of columns (e.g. ``stored``: a bank's keys; ``same_class``: the anchor's class), and
    ``effective_negatives = mean_r exp(-sum_c p_rc log p_rc)``, the number of equally weighted negatives with
    the same entropy: 1 when one negative takes all the mass, ``|N_r|`` when all weigh the same. Means over
    every device's rows (rows without a candidate are left out)."""
    s = jnp.where(candidates, logits.astype(jnp.float32), -jnp.inf)
    has = jnp.any(candidates, -1)
    logp = jax.nn.log_softmax(jnp.where(has[:, None], s, 0.0), -1)
    p = jnp.where(candidates, jnp.exp(logp), 0.0)
    entropy = -jnp.sum(jnp.where(candidates, p * logp, 0.0), -1)
    count = jnp.maximum(jax.lax.psum(jnp.sum(has), AXIS), 1)
    mean = lambda v: jax.lax.psum(jnp.sum(jnp.where(has, v, 0.0)), AXIS) / count  # noqa: E731
    out = {"effective_negatives": mean(jnp.exp(entropy))}
    for name, mask in groups.items():
        out[f"negative_mass_{name}"] = mean(jnp.sum(jnp.where(mask, p, 0.0), -1))
    return out


def eval_key(setup: Setup, seed: int | None = None):
    """The evaluation's random key of the run of seed ``seed`` (default: the setup's)."""
    return jax.random.key((setup.config.seed if seed is None else seed) + 1_000_003)


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
