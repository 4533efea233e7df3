"""Gao et al. (RepL4NLP 2021), Table 1: gradient caching vs gradient accumulation vs a small batch. Small analog.

Claim (Gao, Zhang, Han & Callan 2021, Table 1, DPR on Natural Questions): gradient caching
trains with the large batch's in-batch negatives in the memory of a small one and matches the
large batch; gradient accumulation over small sub-batches (each with only its own negatives)
does not recover it and lands near the small batch.

Ours: SimCLR on MNIST-1D, 400 parameter updates each:
  large batch        B = 256
  gradient cache     B = 256 in chunks of 32 (encoder memory of 32)
  accumulation       8 steps of B = 32 per update (optimizer.accumulate = 8, 3200 steps)
  small batch        B = 32

    python -m experiments.reproduce.gradcache_table --workdir runs/repro/gradcache [--workers 2]

``arg``: ``large=256``, ``small=32``, ``updates=400``, plus base-config overrides.
"""

import sys

from experiments.configs.arguments import apply_arg
from experiments.configs import simclr_mnist1d
from experiments.reproduce import cli, metric, table
from experiments.spec import Sweep

ARMS = ("large batch", "gradient cache", "accumulation", "small batch")


def get_config(arg=None):
    opts = dict(kv.split("=", 1) for kv in filter(None, (arg or "").split(",")))
    large, small = int(opts.pop("large", 256)), int(opts.pop("small", 32))
    updates = int(opts.pop("updates", 400))
    if large % small:
        raise ValueError(f"gradcache_table: small={small} must divide large={large}")
    k = large // small
    base = simclr_mnist1d.get_config()
    base.eval.at_init = False
    base.checkpoint_every = 100_000
    base.log_every = 50
    base = apply_arg(base, ",".join(f"{k_}={v}" for k_, v in opts.items()))
    return Sweep(base=base, zip={
        "batch_size": (large, large, small, small),
        "gradcache_chunk": (0, small, 0, 0),
        "optimizer.accumulate": (1, 1, k, 1),
        "steps": (updates, updates, updates * k, updates),
        "optimizer.warmup_steps": (base.optimizer.warmup_steps, base.optimizer.warmup_steps,
                                   base.optimizer.warmup_steps * k, base.optimizer.warmup_steps),
    }, description=f"Gao et al. 2021 Table 1 analog: {large} vs gradcache {large}/{small} vs accumulation "
                   f"{k}x{small} vs {small}")


def report(df, points, arg=None) -> str:
    """This table of the finished runs ``df`` (``points``: the sweep's, in order), as text."""
    out = []
    finished = set(df.run)
    arm = {a: p.name for a, p in zip(ARMS, points) if p.name in finished}  # the zip above is in ARMS order
    get = lambda a, m: metric(df, f"eval/{m}", run=arm[a])
    rows = [(a, get(a, "knn_accuracy"), get(a, "linear_probe_accuracy"), get(a, "contrastive_accuracy"))
            for a in ARMS if a in arm]
    out.append(table(["method", "kNN accuracy", "linear probe", "contrastive acc (16 candidates)"], rows))
    probe = {a: get(a, "linear_probe_accuracy") for a in arm}
    missing = [a for a in ARMS if a not in probe]
    if missing:
        out.append(f"\nnot finished: {missing}; launch the command again to retry them")
        return "\n".join(out)
    out.append("")
    out.append(table(["claim", "paper (Gao et al. 2021)", "ours (linear probe)", "agrees"], [
        ("gradient cache matches the large batch", "yes",
         f"{probe['gradient cache']:.3f} vs {probe['large batch']:.3f}",
         "yes" if abs(probe["gradient cache"] - probe["large batch"]) <= 0.01 else "no"),
        ("accumulation falls short of the large batch", "yes",
         f"{probe['accumulation']:.3f} vs {probe['large batch']:.3f}",
         "yes" if probe["accumulation"] < probe["large batch"] - 0.01 else "no"),
    ]))
    return "\n".join(out)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
