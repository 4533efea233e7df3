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

from experiments.tasks.common import Setup, init_params
from experiments.train.loop import NonFiniteLoss, enable_compilation_cache, step_width, train, train_group
from experiments.train import members as _members
from experiments.train.members import (_member, _padded_shapes, _stack,  # noqa: F401  (tests stack and split states)
                                       MemberField, group_key, hparams, hparams_type, make_hp, members, step_config,
                                       traced_loss_kwargs)
from experiments.train.outputs import Clock, check_workdir, read_result, write_result
from experiments.train.setup import (PROTOCOL_GROUPS, TRAINING_ONLY, baselines, build, evaluate, evaluate_members,
                                     protocol, protocol_of_json)
from experiments.train.step import make_optimizer, make_step

__all__ = ["train", "train_group", "baselines", "protocol", "protocol_of_json", "group_key", "MEMBER_FIELDS", "MEMBERS", "MemberField",
           "HParams", "hparams", "hparams_type", "make_hp", "members", "step_config", "build", "init_params", "evaluate", "evaluate_members", "make_optimizer",
           "make_step", "Setup", "NonFiniteLoss", "enable_compilation_cache", "step_width", "Clock", "check_workdir",
           "read_result", "write_result", "traced_loss_kwargs", "PROTOCOL_GROUPS", "TRAINING_ONLY"]


def __getattr__(name):  # MEMBERS, MEMBER_FIELDS, HParams: of the tasks registered now (experiments.train.members)
    return getattr(_members, name)
