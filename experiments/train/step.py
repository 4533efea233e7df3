"""The optimiser and the one compiled step of a program (every member, every device)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import PartitionSpec as P

from experiments import tasks
from experiments.tasks.common import AXIS, LOGIT, Setup, doc_tower, embed, encoder_params
from experiments.train.members import step_config
from jaxneg import gradcache, models


def make_optimizer(c: ml_collections.ConfigDict, hp: dict | None = None):
    """``(tx, lr)``: the optax transformation and the learning rate of each step.

    ``hp`` (inside the step): the member's traced learning rate, weight decay and momentum,
    which then replace the config's values; the structure of the optimiser state does not
    depend on them. With ``optimizer.accumulate = k > 1`` the gradients of ``k`` consecutive
    steps are averaged into one update (``optax.MultiSteps``; each step's negatives stay
    within its own batch), and the schedule runs over the ``steps / k`` updates.
    """
    o = c.optimizer
    peak = o.learning_rate if hp is None else hp.learning_rate
    wd = o.weight_decay if hp is None else hp.weight_decay
    momentum = o.momentum if hp is None else hp.momentum
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


def logs(c, count):
    """Whether the loop logs after step ``count`` (1-based: every ``log_every`` steps and the last); a Python
    bool, or a traced one for a traced ``count``."""
    return (count % c.log_every == 0) | (count == c.steps)


def evaluates(c, count):
    """Whether the loop evaluates after step ``count`` (every ``eval_every`` steps; the last step's evaluation
    is the final one); a Python bool, or a traced one for a traced ``count``."""
    return (count % c.eval_every == 0) if c.eval_every else False


def make_step(setup: Setup, configs=None):
    """The jitted step of a group ``(states, batches, step, consts, hps) -> (states, metrics)``.

    ``states``, ``batches`` (``[M, B, ...]``, sharded over devices along ``B``) and ``hps``
    (:class:`~experiments.train.members.HParams`) carry a leading member axis ``M``; each member's update
    is the single-run step, mapped with ``jax.vmap`` inside ``jax.shard_map``. The task's functions see
    the config of :func:`~experiments.train.members.step_config` of the members' ``configs`` (default: the
    setup's): its member fields raise when read as numbers, since each member's values are in ``hp``.
    (About 60 lines: the step is one traced function whose parts close over each other's values.)
    """
    setup = setup.member(step_config(list(configs) if configs else [setup.config]))
    c = setup.config
    task = tasks.get(c.task)
    encode = task.make_encode(setup)
    objective = task.make_objective(setup)

    def one(state, batch, step, consts, hp):
        tx, _ = make_optimizer(c, hp)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(hp.seed), step), jax.lax.axis_index(AXIS))
        k_view, k_neg, k_enc = jax.random.split(key, 3)
        inputs, extra, shared, fixed = task.inputs(setup, (k_view, k_neg), state, dict(batch, step=step), consts,
                                                   hp)  # StepInputs
        diagnostics = dict(extra.diagnostics or {})
        extra = extra._replace(step=step, diagnostics=None)
        with_fixed = (lambda reps: reps) if fixed is None else (lambda reps: (reps[0], reps[1], fixed))
        params = state["params"]
        lp = params.get(LOGIT)
        if c.gradcache_chunk:  # (config_lib rules out shared negatives here)
            vg = gradcache.value_and_grad(encode, lambda reps, lp_=None: (objective(with_fixed(reps), lp_, extra, hp),
                                                                          with_fixed(reps)),
                                          chunk_size=c.gradcache_chunk, has_aux=True, axis_name=AXIS)
            (loss, reps), (g_enc, g_lp) = vg(encoder_params(params), inputs, k_enc, lp)
            grads = dict(g_enc, **({LOGIT: g_lp} if lp is not None else {}))
        else:
            def total(params):
                enc = encoder_params(params)
                reps = encode(enc, inputs, k_enc)
                if shared is not None:  # popularity: one set of negatives [K] shared by the batch
                    reps = (reps[0], reps[1], embed(*doc_tower(setup, enc), shared))
                return objective(with_fixed(reps), params.get(LOGIT), extra, hp), with_fixed(reps)

            (loss, reps), grads = jax.value_and_grad(total, has_aux=True)(params)
        reps = jax.lax.stop_gradient(reps)
        extra = extra._replace(embeddings=reps[0], reps=reps)
        diagnose = lambda: task.diagnose(setup, state, extra, hp)  # noqa: E731
        unread = lambda: jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.floating)  # noqa: E731
                                                         else 0, s.dtype), jax.eval_shape(diagnose))
        # only on the steps whose diagnostics the loop reads (the regime is a second similarity matrix;
        # BENCHMARKS.md): ``step`` is the same for every member, so under ``vmap`` the cond stays a branch; the
        # other steps report NaN, which nothing reads
        diagnostics.update(jax.lax.cond(logs(c, step + 1) | evaluates(c, step + 1), diagnose, unread))
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
