"""Chuang et al. (NeurIPS 2020): debiased contrastive loss vs plain NT-Xent across batch sizes. Small analog.

Claim (Chuang et al. 2020, Figure 3 / Section 5.1, SimCLR on CIFAR10 and STL10): the debiased
objective, which corrects the negative term for same-class "negatives" with the class prior
tau+, beats the biased (plain) objective at every batch size, with no extra negatives.

Ours: SimCLR on MNIST-1D (10 balanced classes, so the true tau+ = 0.1), temperature 0.5 as in
the paper, 400 steps, batch size in {32, 64, 128, 256}, loss in {ntxent, debiased tau+=0.1};
kNN and linear-probe accuracy.

    python -m experiments.reproduce.debiased_small_batch --workdir runs/repro/debiased [--workers 2]

``arg``: ``batches=32-64-128-256``, ``tau_plus=0.1``, ``steps=400``, ``seeds=1``, plus overrides.
"""

import sys

from experiments.configs.arguments import apply_arg, number_list
from experiments.configs import simclr_mnist1d
from experiments.reproduce import cli, metric, table
from experiments.spec import Sweep


def get_config(arg=None):
    opts = dict(kv.split("=", 1) for kv in filter(None, (arg or "").split(",")))
    batches = number_list("batches", opts.pop("batches", "32-64-128-256"), int, "debiased_small_batch")
    tau_plus = float(opts.pop("tau_plus", 0.1))
    seeds = int(opts.pop("seeds", 1))
    base = simclr_mnist1d.get_config()
    base.steps = int(opts.pop("steps", 400))
    base.loss.temperature = 0.5
    base.eval.at_init = False
    base.checkpoint_every = 10_000
    base = apply_arg(base, ",".join(f"{k}={v}" for k, v in opts.items()))
    grid = {"batch_size": batches}
    if seeds > 1:
        grid["seed"] = tuple(range(seeds))
    return Sweep(base=base, grid=grid,
                 zip={"loss.name": ("ntxent", "debiased"), "loss.kwargs": ({}, {"tau_plus": tau_plus})},
                 description=f"Chuang et al. 2020 analog: debiased (tau+={tau_plus}) vs NT-Xent by batch size")


def report(df, points, arg=None) -> str:
    """This table of the finished runs ``df`` (``points``: the sweep's, in order), as text."""
    out = []
    rows, wins = [], 0
    for b in sorted(df.batch_size.unique()):
        plain = {m: metric(df, f"eval/{m}", batch_size=b, **{"loss.name": "ntxent"}) for m in ("knn_accuracy", "linear_probe_accuracy")}
        deb = {m: metric(df, f"eval/{m}", batch_size=b, **{"loss.name": "debiased"}) for m in ("knn_accuracy", "linear_probe_accuracy")}
        gain = deb["linear_probe_accuracy"] - plain["linear_probe_accuracy"]
        wins += gain > 0
        rows.append((int(b), plain["knn_accuracy"], deb["knn_accuracy"], plain["linear_probe_accuracy"],
                     deb["linear_probe_accuracy"], f"{gain:+.3f}"))
    out.append(table(["batch", "kNN plain", "kNN debiased", "probe plain", "probe debiased", "probe gain"], rows))
    out.append("")
    out.append(table(["claim", "paper (Chuang et al. 2020)", "ours", "agrees"], [
        ("debiased beats plain at every batch size", "yes", f"{wins} of {len(rows)} batch sizes",
         "yes" if wins == len(rows) else "no")]))
    return "\n".join(out)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
