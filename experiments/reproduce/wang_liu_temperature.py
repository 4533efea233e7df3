"""Wang & Liu (CVPR 2021): temperature trades uniformity against tolerance. Small-scale analog.

Claim (Wang & Liu 2021, Sections 4-5, Table 1 and Figure 6 on CIFAR/SVHN/ImageNet-100):
as the temperature tau of the contrastive loss grows, the embedding becomes *less uniform*
(the uniformity metric log E exp(-2||z_i - z_j||^2) rises) and *more tolerant* (the mean
cosine of same-class pairs rises); downstream accuracy peaks at an intermediate tau.

Ours: SimCLR (NT-Xent) on MNIST-1D, the default experiment at 400 steps, over
tau in {0.05, 0.1, 0.2, 0.5, 1.0}; uniformity of the test-view embeddings, tolerance of the
test embeddings with the class labels (``jaxneg.metrics.tolerance``), kNN accuracy.

    python -m experiments.reproduce.wang_liu_temperature --workdir runs/repro/wang_liu [--workers 2]

``arg``: ``temperatures=0.05-0.1-0.2-0.5-1.0``, ``steps=400``, plus base-config overrides.
"""

import sys

from experiments.configs.arguments import apply_arg, number_list
from experiments.configs import simclr_mnist1d
from experiments.reproduce import cli, metric, spearman, table
from experiments.spec import Sweep


def get_config(arg=None):
    opts = dict(kv.split("=", 1) for kv in filter(None, (arg or "").split(",")))
    temps = number_list("temperatures", opts.pop("temperatures", "0.05-0.1-0.2-0.5-1.0"), float, "wang_liu_temperature")
    base = simclr_mnist1d.get_config()
    base.steps = int(opts.pop("steps", 400))
    base.eval.at_init = False
    base.checkpoint_every = 10_000
    base = apply_arg(base, ",".join(f"{k}={v}" for k, v in opts.items()))
    return Sweep(base=base, grid={"loss.temperature": temps},
                 description="Wang & Liu 2021 analog: temperature vs uniformity / tolerance (SimCLR, MNIST-1D)")


def report(df, points, arg=None) -> str:
    """This table of the finished runs ``df`` (``points``: the sweep's, in order), as text."""
    out = []
    temps = sorted(df["loss.temperature"].unique())
    rows = [(t, metric(df, "eval/uniformity", **{"loss.temperature": t}),
             metric(df, "eval/tolerance", **{"loss.temperature": t}),
             metric(df, "eval/knn_accuracy", **{"loss.temperature": t})) for t in temps]
    out.append(table(["tau", "uniformity (lower = more uniform)", "tolerance", "kNN accuracy"], rows))
    u = spearman(temps, [r[1] for r in rows])
    tol = spearman(temps, [r[2] for r in rows])
    acc = [r[3] for r in rows]
    best = temps[max(range(len(acc)), key=acc.__getitem__)]
    out.append("")
    out.append(table(["trend with tau", "paper (Wang & Liu 2021)", "ours (Spearman rho over tau)", "agrees"], [
        ("uniformity metric", "rises (less uniform)", f"{u:+.2f}", "yes" if u > 0 else "no"),
        ("tolerance", "rises", f"{tol:+.2f}", "yes" if tol > 0 else "no"),
        ("best accuracy", "at an intermediate tau", f"tau = {best:g}",
         "yes" if best not in (temps[0], temps[-1]) else "no"),
    ]))
    return "\n".join(out)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
