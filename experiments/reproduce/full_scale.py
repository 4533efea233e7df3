"""The full-scale paper grids of the paper configs (``experiments/configs``), as sweeps (accelerators; hours to days).

``--config`` picks the table:

* ``simclr_batch``: Chen et al. 2020, Table B.1 / Figure 9 — SimCLR on CIFAR-10 at batch
  256 ... 8192 (``epochs=100`` by default; LARS, lr = B/256), from ``simclr_cifar10``.
* ``debiased_tau_plus``: Chuang et al. 2020 — STL-10, tau+ in {0, 0.01, 0.05, 0.1}
  (tau+ = 0 is the biased SimCLR baseline), from ``debiased_stl10``.
* ``uniformity_temperature``: Wang & Liu 2021 — CIFAR-10, tau in {0.07, 0.2, 0.3, 0.7, 1.0},
  from ``uniformity_cifar``; the table prints uniformity, tolerance and accuracy.

::

    python -m experiments.reproduce.full_scale --config simclr_batch --workdir /data/sweeps/simclr \\
        [--backend slurm --slurm "slurm_partition='gpu',gpus_per_node=8,timeout_min=1440"]

The datasets come from tensorflow-datasets (downloaded by tfds on first use). ``--print_only``
prints the table from the finished runs.
"""

from __future__ import annotations

import sys

from experiments.configs import debiased_stl10, simclr_cifar10, uniformity_cifar
from experiments.reproduce import cli as reproduce_cli
from experiments.reproduce import metric, table
from experiments.spec import Analysis, Sweep, get_field

TABLES = ("simclr_batch", "debiased_tau_plus", "uniformity_temperature")


def get_config(arg=None):
    opts = dict(kv.split("=", 1) for kv in filter(None, (arg or "").split(",")))
    name = opts.pop("table", "simclr_batch")
    if name == "simclr_batch":
        epochs = int(opts.pop("epochs", 100))
        points = [simclr_cifar10.get_config(f"batch={b},epochs={epochs}") for b in simclr_cifar10.GRID["batch"]]
        fields = ("batch_size", "steps", "optimizer.learning_rate", "optimizer.warmup_steps")
        zipped = {f: tuple(get_field(c, f) for c in points) for f in fields}
        return Sweep(base=points[0], zip=zipped,
                     analyses=(Analysis(x="batch_size", y="eval/linear_probe_accuracy", complement=True),),
                     description=f"Chen et al. 2020 Table B.1: SimCLR CIFAR-10, {epochs} epochs, batch 256-8192")
    if name == "debiased_tau_plus":
        base = debiased_stl10.get_config("tau_plus=0.1")
        return Sweep(base=base, grid={"loss.kwargs": tuple({"tau_plus": t} for t in (0.0, 0.01, 0.05, 0.1))},
                     description="Chuang et al. 2020: debiased contrastive loss on STL-10 over tau+")
    if name == "uniformity_temperature":
        base = uniformity_cifar.get_config("temperature=0.2")
        return Sweep(base=base, grid={"loss.temperature": (0.07, 0.2, 0.3, 0.7, 1.0)},
                     description="Wang & Liu 2021: temperature vs uniformity and tolerance on CIFAR-10")
    raise ValueError(f"full_scale: table must be one of {TABLES}, got {name!r}")


def report(df, points, arg=None) -> str:
    """The table of one full-scale run of the finished runs ``df``: the swept field against the linear
    probe, kNN, uniformity and tolerance."""
    name = (arg or "").split("table=")[-1].split(",")[0]
    field = {"simclr_batch": "batch_size", "debiased_tau_plus": "loss.kwargs.tau_plus",
             "uniformity_temperature": "loss.temperature"}[name]
    rows = [(v, metric(df, "eval/linear_probe_accuracy", **{field: v}), metric(df, "eval/knn_accuracy", **{field: v}),
             metric(df, "eval/uniformity", **{field: v}), metric(df, "eval/tolerance", **{field: v}))
            for v in sorted(df[field].unique())]
    return table([field, "linear probe", "kNN", "uniformity", "tolerance"], rows)


#: ``--config NAME`` chooses the table (the config argument ``table=NAME``)
ARG_CHOICES = ("config", TABLES, "table")

if __name__ == "__main__":
    reproduce_cli.main(sys.modules[__name__])
