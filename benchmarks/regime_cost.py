"""What the regime diagnostics cost a training step (``views.negative_regime``, ``pairs.negative_regime``).

The regime is the softmax of each anchor's negatives, computed a second time beside the loss to report
``effective_negatives`` and the ``negative_mass_*`` shares (issue 40); since 946362a only on the steps the loop
reads (here, with ``log_every = steps``, the last one), before it on every step. This script trains the main job's
heaviest programs of each kind for ``--steps`` steps twice in one process, in turn: as shipped, and with the
regime function replaced by one that returns nothing (the rest of the step unchanged), and compares the
``steps`` phase of their time accounts (compilation excluded). Each pair is repeated ``--repeats`` times
and the median ratio printed: on a shared machine the ratio is what to read, not the seconds.

Usage::

    python benchmarks/regime_cost.py          # prints a Markdown table for BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.config_lib import set_field  # noqa: E402
from experiments.configs import quickstart, simclr_mnist1d  # noqa: E402
from experiments.tasks import pairs, sources, views  # noqa: E402


def programs(steps: int) -> dict:
    """The main job's CPU programs whose regime is largest: part 2's full batch and its largest queue and
    bank (B = 128, n = 3,838), and part 3's hard mining at k = 15 on 16,384 documents."""
    def view_run(name, n):
        c = simclr_mnist1d.get_config()
        job = sources.MainJob(batch_size=128, steps=steps)
        for k, v in {"batch_size": 128, "steps": steps, "loss.temperature": 0.1, "optimizer.learning_rate": 1e-2,
                     **sources.get(name).setting(n, job)}.items():
            set_field(c, k, v, "regime_cost")
        return c

    retrieval = quickstart.retrieval(steps=steps, max_k=15)
    retrieval["data.config"] = {**quickstart.RETRIEVAL_DATA, "num_docs": 16384, "num_train_queries": 65536}
    hard = simclr_mnist1d.get_config()
    for k, v in {**retrieval, **sources.get("hard").setting(15, sources.MainJob(128, steps, views=1))}.items():
        set_field(hard, k, v, "regime_cost")
    out = {"part 2, full batch (n = 254)": view_run("subsampled", 254),
           "part 2, queue n = 3,838": view_run("queue", 3838),
           "part 2, bank n = 3,838": view_run("memory", 3838),
           "part 3, hard k = 15, 16,384 documents": hard}
    for c in out.values():
        c.eval.at_init, c.log_every, c.checkpoint_every = False, steps, steps
    return out


@contextlib.contextmanager
def without_regime():
    saved = views.negative_regime, pairs.negative_regime
    views.negative_regime = pairs.negative_regime = lambda *a, **k: {}
    try:
        yield
    finally:
        views.negative_regime, pairs.negative_regime = saved


def steps_seconds(config) -> float:
    from experiments.train import train

    with tempfile.TemporaryDirectory() as d:
        return float(train(config, d)["time_account"]["steps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="run the programs whose name contains this text")
    args = parser.parse_args()
    print("| program | steps with the regime / without (median of "
          f"{args.repeats}) | seconds with, without (median) |")
    print("|---|---|---|")
    for name, config in programs(args.steps).items():
        if args.only not in name:
            continue
        ratios, with_, without = [], [], []
        for _ in range(args.repeats):
            a = steps_seconds(config)
            with without_regime():
                b = steps_seconds(config)
            ratios.append(a / b)
            with_.append(a)
            without.append(b)
        print(f"| {name} | {statistics.median(ratios):.3f} | {statistics.median(with_):.2f}, "
              f"{statistics.median(without):.2f} |", flush=True)


if __name__ == "__main__":
    main()
