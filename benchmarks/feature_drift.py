"""Feature drift of a memory-bank run: how far a stored key is from its example's current embedding.

Trains the main job's part-2 memory run (SimCLR on MNIST-1D, B = 128, 300 steps at learning rate 1e-2,
tau 0.1, a bank of 3,584 keys counted from step 100, so n = 3,838; seed 0), keeping a checkpoint every
10 steps. Then, for 1,024 training examples in the identity view, embedded as the bank stores them (the
head's output minus the set's mean, normalised), it prints per step ``t``:

* ``same_example_t-d``: mean cosine between an example's embedding under the encoder at ``t`` and at
  ``t - d`` (a key ``d`` steps old against what the encoder makes of the same example now; the bank holds
  keys up to 3,584 / 128 = 28 steps old);
* ``positive_pair``: mean cosine of two augmented views of an example at ``t`` (what the loss aligns);
* ``negative_pair``: mean cosine of two different examples at ``t``.

Usage::

    python benchmarks/feature_drift.py --workdir /tmp/drift     # about 1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from experiments import train as T
from experiments.configs.arguments import apply_arg
from experiments.configs import simclr_mnist1d
from jaxneg import data

RUN = ("batch_size=128", "steps=300", "optimizer.learning_rate=0.01", "loss.temperature=0.1", "negatives.memory=3584",
       "negatives.memory_from=100", "checkpoint_every=10", "keep_checkpoints=40", "log_every=50")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="where the run goes (reused when it has finished)")
    p.add_argument("--examples", type=int, default=1024)
    a = p.parse_args()
    c = simclr_mnist1d.get_config(None)
    for kv in RUN:
        c = apply_arg(c, kv)
    c.optimizer.warmup_steps, c.eval.at_init, c.progress = 20, False, False  # the quickstart's schedule
    if not os.path.exists(os.path.join(a.workdir, "result.json")):
        T.train(c, a.workdir)
    setup = T.build(c)
    x = jnp.asarray(setup.train.arrays["x"][: a.examples])
    identity = jax.vmap(data.identity_view, (None, 0))(jax.random.key(0), x)
    v1, v2 = data.two_views(jax.random.key(5), x, c.data.view, **c.data.view_kwargs.to_dict())

    def embed(params, inputs):
        z = setup.query_model.apply(params, inputs)[1]
        z = z - jnp.mean(z, 0)
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True)

    ckpt = os.path.join(a.workdir, "checkpoints")
    steps = sorted(int(s) for s in os.listdir(ckpt) if s.isdigit())
    params = {s: ocp.StandardCheckpointer().restore(os.path.join(ckpt, str(s), "default"))["params"]["query"]
              for s in steps}
    emb = {s: embed(params[s], identity) for s in steps}
    cos = lambda u, v: round(float(jnp.mean(jnp.sum(u * v, -1))), 3)  # noqa: E731
    for t in (150, 200, 250, 300):
        row = {"t": t, "positive_pair": cos(embed(params[t], v1), embed(params[t], v2)),
               "negative_pair": cos(emb[t], jnp.roll(emb[t], 1, 0))}
        row.update({f"same_example_t-{d}": cos(emb[t], emb[t - d]) for d in (10, 30, 60) if t - d in emb})
        print(json.dumps(row))


if __name__ == "__main__":
    main()
