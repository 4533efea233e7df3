"""Shared helpers: load a config module, shrink it for tests, read checkpoints."""

import importlib
import os

import numpy as np
import orbax.checkpoint as ocp

from experiments.config_lib import set_field


#: an override value that keeps the config's own value of a field the tests otherwise shrink
DEFAULT = object()


def config(name, arg=None, **overrides):
    c = importlib.import_module(f"experiments.configs.{name}").get_config(arg)
    small = {"num_devices": 1, "steps": 4, "batch_size": 32, "log_every": 2, "checkpoint_every": 2, "progress": False,
             "eval.max_examples": 200, "eval.probe_steps": 20, "eval.num_candidates": 8}
    for field, value in {**small, **overrides}.items():
        if value is not DEFAULT:
            set_field(c, field, value, "test config")
    return c


def patch_task(monkeypatch, name, **fields):
    """Make ``experiments.train`` see the registered task ``name`` with ``fields`` replaced (for this test)."""
    import dataclasses

    from experiments import tasks

    get = tasks.get
    patched = dataclasses.replace(get(name), **fields)
    monkeypatch.setattr(tasks, "get", lambda n: patched if n == name else get(n))


def final_params(workdir):
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(steps[-1]), "default"))
    return steps[-1], state["params"]


def leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


SMALL_SWEEP = {"data.config": {"num_samples": 600}, "eval.max_examples": 120, "eval.probe_steps": 10,
               "log_every": 2, "checkpoint_every": 2, "model.kwargs": {"channels": (8, 16), "kernel": 3},
               "model.head_hidden": (16,), "model.embed_dim": 16, "eval.at_init": False}


def small_sweep(**kw):
    """2 temperatures x 3 batch sizes (zipped with the step count) of a tiny SimCLR on MNIST-1D."""
    from experiments import sweep as S

    # (runs of 2-4 steps sit at the untrained encoder's level: the test fits them all, keep_below_floor)
    spec = dict(grid={"loss.temperature": (0.1, 0.5)}, zip={"batch_size": (8, 16, 32), "steps": (4, 4, 2)},
                analyses=(S.Analysis(x="batch_size", y="eval/knn_accuracy", group="loss.temperature",
                                     complement=True, n_bootstrap=4, keep_below_floor=True),),
                description="a test sweep")
    spec.update(kw)
    return S.Sweep(base=config("simclr_mnist1d", **SMALL_SWEEP), **spec)
