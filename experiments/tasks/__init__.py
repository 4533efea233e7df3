"""What a run trains on: one module per ``config.task``, each with the same five functions.

==========  ======================================================================================
``views``   two random views of each example (SimCLR); optionally a MoCo key encoder and queue
``pairs``   (query, document) pairs, with sampled or mined extra negatives
==========  ======================================================================================

Every task module provides (``setup``: :class:`experiments.tasks.common.Setup`)::

    NEEDS                                   dataset fields the task reads
    host_batch(setup, seed, step)           this process' share of batch ``step`` (NumPy), a pure
                                            function of (seed, step)
    example_inputs(setup)                   (query input, doc input or None) of one example, to init models
    consts(setup)                           device constants every step reads (the corpus, counts)
    init_state(setup, params, key)          state entries beside params / opt_state (index, queue, key params)
    refresh(setup, state, step)             host-side state updates between steps (the mined index)
    make_encode(setup)                      ``encode(enc_params, inputs, key) -> (z_a, z_b, z_neg)``
    make_objective(setup)                   ``objective(reps, logit_params, extra, hp) -> loss`` (both tasks
                                            share :func:`experiments.tasks.common.make_objective`: how a
                                            loss is called is its registry entry's business)
    inputs(setup, keys, state, batch, consts, hp)
                                            inside ``shard_map``, one member: the encoder ``inputs``
                                            (a, b, per-query negatives), the loss' ``extra`` arrays, the
                                            ``shared`` negative inputs the encoder sees, and ``fixed``
                                            negative embeddings (the queue)
    after_step(setup, state, params, aux, hp)
                                            state updates after the optimizer step (queue, EMA)
    evaluate(setup, params)                 downstream metrics of ``params`` (``setup.config.seed``)

:mod:`experiments.train` is the loop around them: restore, step, log, checkpoint, result.
"""

from experiments.tasks import pairs, views

TASKS = {"views": views, "pairs": pairs}


def get(name: str):
    """The task module of ``config.task``."""
    if name not in TASKS:
        raise ValueError(f"config.task={name!r} is not valid; valid values: {', '.join(map(repr, TASKS))}")
    return TASKS[name]
