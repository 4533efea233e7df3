"""Shared helpers: load a config module, shrink it for tests, read checkpoints."""

import importlib
import os

import numpy as np
import orbax.checkpoint as ocp


def config(name, arg=None, **overrides):
    c = importlib.import_module(f"experiments.configs.{name}").get_config(arg)
    small = {"num_devices": 1, "steps": 4, "batch_size": 32, "log_every": 2, "checkpoint_every": 2, "progress": False,
             "eval.max_examples": 200, "eval.probe_steps": 20, "eval.num_candidates": 8}
    for field, value in {**small, **overrides}.items():
        node = c
        *parents, leaf = field.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def final_params(workdir):
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(steps[-1]), "default"))
    return steps[-1], state["params"]


def leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]
