"""Wu et al. (CVPR 2018), Table 1: kNN accuracy against the number of negatives drawn from an instance memory.

Claim (Wu, Xiong, Yu & Lin 2018, Table 1, CIFAR-10, ResNet-18, NCE with ``m`` noise samples drawn from a
memory of every training example's embedding): kNN accuracy rises with ``m`` and saturates,
42.5 / 63.4 / 78.4 / 80.4 % at m = 1 / 10 / 512 / 4096 (80.5 % for the full non-parametric softmax).

Ours, Wu et al.'s objective (``config.negatives.instance``): a memory with one slot per training example
(4,000 on MNIST-1D); each example's augmented view ``f_i`` (the 1-D CNN, centred by the batch mean and
normalised) is contrasted with its *own* slot ``v_i`` as the positive against ``m`` slots drawn at random
(never its own), with the softmax over the drawn slots (the paper's NCE is not implemented: its softmax
with all slots is the paper's own upper line), temperature 0.07; then the slots are updated in place,
``v_i <- normalize(0.5 v_i + 0.5 f_i)``. The largest ``m`` takes every other slot (3,999). B = 128, learning
rate 1e-2; the proximal term ``lambda |f_i - v_i|^2`` (Section 3.4) is off by default (``proximal=``).
Read against the sweep's baselines (raw input, untrained encoder).

    python -m experiments.reproduce.wu_memory_bank --workdir runs/repro/wu [--workers 2]

``arg``: ``negatives=1-10-512-3999``, ``seeds=1``, ``steps=2000``, ``proximal=0``, plus base-config overrides.
Differences from the paper: softmax over the drawn slots instead of NCE, a 1-D CNN on 4,000 signals instead
of a ResNet on 50,000 images; compare the shape. The FIFO bank of recent embeddings (``negatives.memory``,
cross-batch memory) is the main job's ``memory`` source, not this.
"""

import sys

from experiments.configs.arguments import apply_arg, arg_options, number, number_list
from experiments.configs import quickstart, simclr_mnist1d
from experiments.reproduce import cli, metric, spearman, table
from experiments.spec import Analysis, Sweep

PAPER = {1: 42.5, 10: 63.4, 512: 78.4, 4096: 80.4}  # Table 1, kNN accuracy (%), NCE with m negatives
BATCH = 128


def get_config(arg=None):
    opts = arg_options(arg, "wu_memory_bank")
    every = quickstart.NUM_TRAIN - 1  # every slot but the anchor's own
    negatives = number_list("negatives", opts.pop("negatives", f"1-10-512-{every}"), int, "wu_memory_bank")
    seeds = number("seeds", opts.pop("seeds", "1"), int, "wu_memory_bank")
    base = simclr_mnist1d.get_config()
    base.loss.name = "infonce"
    base.loss.temperature = 0.07
    base.negatives.instance = True
    base.negatives.instance_momentum = 0.5
    base.negatives.proximal = number("proximal", opts.pop("proximal", "0"), float, "wu_memory_bank")
    base.batch_size = BATCH
    base.steps = number("steps", opts.pop("steps", "2000"), int, "wu_memory_bank")
    base.optimizer.learning_rate = quickstart.LEARNING_RATE
    base.optimizer.warmup_steps = 20
    base.eval.at_init = False
    base.checkpoint_every = 500
    base.log_every = 100
    base = apply_arg(base, ",".join(f"{k}={v}" for k, v in opts.items()))
    if max(negatives) > every or min(negatives) < 1:
        raise ValueError(f"wu_memory_bank: negatives must lie in [1, {every}] (the other slots of the memory), "
                         f"got {list(negatives)}")
    return Sweep(base=base, grid={"seed": tuple(range(seeds))}, zip={"negatives.subsample": negatives},
                 analyses=(Analysis(x="negatives.subsample", y="eval/knn_accuracy", complement=True),),
                 description=f"Wu et al. 2018 Table 1 analog: kNN accuracy vs negatives drawn from an instance memory "
                             f"of {quickstart.NUM_TRAIN} slots (one per example, its own slot the positive, updated in "
                             f"place with m = 0.5), MNIST-1D, B = {BATCH}, {base.steps} steps, tau = "
                             f"{base.loss.temperature}, proximal lambda = {base.negatives.proximal}")


def report(df, points, arg=None) -> str:
    """This table of the finished runs ``df`` (``points``: the sweep's, in order), as text."""
    out = []
    ns = sorted({p.config.negatives.subsample for p in points})
    ours = [metric(df, "eval/knn_accuracy", **{"negatives.subsample": n}) for n in ns]
    paper = [PAPER.get(n, PAPER[4096] if n == max(ns) else float("nan")) for n in ns]
    out.append(table(["negatives m", "paper kNN % (CIFAR-10)", "ours kNN (MNIST-1D)"],
                [(n, p, o) for n, p, o in zip(ns, paper, ours)]))
    rho = spearman(ns, ours)
    gain = ours[-1] - ours[0]
    out.append("")
    out.append(table(["trend with m", "paper (Wu et al. 2018)", "ours", "agrees"], [
        ("kNN accuracy", "rises, then saturates", f"Spearman rho {rho:+.2f}", "yes" if rho > 0 else "no"),
        ("kNN(all) - kNN(1)", "+0.38 (80.4 - 42.5 %)", f"{gain:+.3f}", "yes" if gain >= 0.10 else "no")]))
    return "\n".join(out)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
