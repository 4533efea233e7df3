"""What a run trains on: a registry of :class:`~experiments.tasks.common.Task` records, one per ``config.task``.

==========  ======================================================================================
``views``   two random views of each example (SimCLR); optionally a MoCo key encoder and queue
``pairs``   (query, document) pairs, with sampled or mined extra negatives
==========  ======================================================================================

A task is a frozen :class:`~experiments.tasks.common.Task` record (its fields and their
contracts are listed there): the batches, the encoder and objective, the step inputs
(:class:`~experiments.tasks.common.StepInputs`), the state it keeps beside the parameters,
its evaluation, its config rules (``validate``) and its refresh schedule. ``experiments.train``
and ``experiments.config_lib`` read the record of ``config.task`` and never ask which task
they hold.

Adding a task takes two files: a module that ends with ``common.register(common.Task(name=...,
...))``, and its import below.
"""

from experiments.tasks import common
from experiments.tasks import sources  # noqa: F401  (every negative source registers itself)
from experiments.tasks import pairs, views  # noqa: F401  (each registers its Task)
from experiments.tasks.common import TASKS, StepInputs, Task, get, register

__all__ = ["TASKS", "StepInputs", "Task", "common", "get", "register"]
