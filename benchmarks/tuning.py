"""Train variants of one run config as members of one program and print their downstream accuracy.

::

    python benchmarks/tuning.py --base "batch_size=128,steps=300" \\
        optimizer.learning_rate=0.002 optimizer.learning_rate=0.01        # learning rates (members)
    python benchmarks/tuning.py --base "batch_size=128,steps=300,negatives.memory=768" \\
        loss.temperature=0.2 negatives.memory_from=150                    # memory-bank variants

Every variant is ``experiments/configs/simclr_mnist1d.py`` with the quickstart's schedule (warm-up 20
steps, no evaluation at initialisation), ``--base`` and its own ``field=value,...`` applied. Variants
that differ only in member fields (``experiments.train.MEMBER_FIELDS``) train as members of one compiled
program; the others as one program each. One JSON line per variant: kNN and linear-probe accuracy, the
final loss, and the program's wall seconds. How the quickstart's defaults were chosen (BENCHMARKS.md).
"""

import argparse
import json
import os
import tempfile
import time

from experiments import train
from experiments.configs.arguments import apply_arg
from experiments.configs import simclr_mnist1d


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="", help="overrides every variant shares (key=value,...)")
    p.add_argument("--workdir", default=None, help="where the runs go (default: a temporary directory)")
    p.add_argument("variants", nargs="+", help="one key=value,... per variant")
    args = p.parse_args()
    train.enable_compilation_cache()
    configs = []
    for v in args.variants:
        c = simclr_mnist1d.get_config(args.base or None)
        c.optimizer.warmup_steps, c.eval.at_init, c.progress = 20, False, False
        c.log_every, c.checkpoint_every = 50, c.steps
        configs.append(apply_arg(c, v))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or tmp
        by_key = {}
        for v, c in zip(args.variants, configs):
            by_key.setdefault(train.group_key(c), []).append((v, c))
        for group in by_key.values():
            t = time.perf_counter()
            results = train.train_group([c for _, c in group], [os.path.join(root, v) for v, _ in group])
            for (v, _), r in zip(group, results):
                print(json.dumps({"base": args.base, "variant": v, "knn": round(r["eval"]["knn_accuracy"], 4),
                                  "probe": round(r["eval"]["linear_probe_accuracy"], 4),
                                  "final_loss": round(r["final_loss"], 4), "seconds": round(time.perf_counter() - t, 1)}),
                      flush=True)


if __name__ == "__main__":
    main()
