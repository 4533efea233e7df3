"""Wu et al. (CVPR 2018), Table 1: kNN accuracy against the number of negatives drawn from a memory bank.

Claim (Wu, Xiong, Yu & Lin 2018, Table 1, CIFAR-10, ResNet-18, NCE with ``m`` noise samples drawn from a
memory bank of every training example's embedding): kNN accuracy rises with ``m`` and saturates,
42.5 / 63.4 / 78.4 / 80.4 % at m = 1 / 10 / 512 / 4096 (80.5 % for the full non-parametric softmax).

Ours: SimCLR (NT-Xent, tau 0.1) on MNIST-1D with the quickstart's settings (B = 128, 300 steps,
learning rate 1e-2) and a memory bank of the encoder's own recent embeddings holding
``N_train - B`` = 3,872 slots (about one epoch: every training example's last embedding, as Wu's
bank, refreshed FIFO instead of in place). Each anchor sees ``m`` negatives drawn at random from
the in-batch candidates and the bank together (``config.negatives.subsample = m``), never its
own earlier embedding; the largest ``m`` takes every candidate (the full softmax over the bank).
The bank counts once full. Read against the sweep's baselines (raw input, untrained encoder).

    python -m experiments.reproduce.wu_memory_bank --workdir runs/repro/wu [--workers 2]

``arg``: ``negatives=1-10-512-4126``, ``seeds=1``, ``steps=300``, plus base-config overrides.
Differences from the paper: softmax (NT-Xent) over the drawn negatives instead of NCE, no proximal
regularisation, a 1-D CNN on 4,000 signals instead of a ResNet on 50,000 images; compare the shape.
"""

from experiments.config_lib import apply_arg, arg_options, number, number_list
from experiments.configs import quickstart, simclr_mnist1d
from experiments.reproduce import command, metric, spearman, table
from experiments.sweep import Analysis, Sweep

PAPER = {1: 42.5, 10: 63.4, 512: 78.4, 4096: 80.4}  # Table 1, kNN accuracy (%), NCE with m negatives
BATCH = 128


def get_config(arg=None):
    opts = arg_options(arg, "wu_memory_bank")
    bank = quickstart.NUM_TRAIN - BATCH
    full = 2 * BATCH - 2 + bank
    negatives = number_list("negatives", opts.pop("negatives", f"1-10-512-{full}"), int, "wu_memory_bank")
    seeds = number("seeds", opts.pop("seeds", "1"), int, "wu_memory_bank")
    base = simclr_mnist1d.get_config()
    base.batch_size = BATCH
    base.steps = number("steps", opts.pop("steps", "300"), int, "wu_memory_bank")
    base.optimizer.learning_rate = quickstart.LEARNING_RATE
    base.optimizer.warmup_steps = 20
    base.loss.temperature = 0.1
    base.negatives.memory = bank
    base.eval.at_init = False
    base.checkpoint_every = 10_000
    base = apply_arg(base, ",".join(f"{k}={v}" for k, v in opts.items()))
    if max(negatives) > full or min(negatives) < 1:
        raise ValueError(f"wu_memory_bank: negatives must lie in [1, {full}] (the in-batch candidates and the bank), "
                         f"got {list(negatives)}")
    return Sweep(base=base, grid={"seed": tuple(range(seeds))}, zip={"negatives.subsample": negatives},
                 analyses=(Analysis(x="negatives.subsample", y="eval/knn_accuracy", complement=True),),
                 description=f"Wu et al. 2018 Table 1 analog: kNN accuracy vs negatives drawn from a memory bank of "
                             f"{bank} recent embeddings (SimCLR, MNIST-1D, B = {BATCH})")


def main():
    import sys

    df, points = command(sys.modules[__name__], __doc__.splitlines()[0])
    ns = sorted({p.config.negatives.subsample for p in points})
    ours = [metric(df, "eval/knn_accuracy", **{"negatives.subsample": n}) for n in ns]
    paper = [PAPER.get(n, PAPER[4096] if n == max(ns) else float("nan")) for n in ns]
    print(table(["negatives m", "paper kNN % (CIFAR-10)", "ours kNN (MNIST-1D)"],
                [(n, p, o) for n, p, o in zip(ns, paper, ours)]))
    rho = spearman(ns, ours)
    print()
    print(table(["trend with m", "paper (Wu et al. 2018)", "ours", "agrees"], [
        ("kNN accuracy", "rises, then saturates", f"Spearman rho {rho:+.2f}", "yes" if rho > 0 else "no")]))


if __name__ == "__main__":
    main()
