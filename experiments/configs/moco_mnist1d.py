"""MoCo on MNIST-1D as its CIFAR-10 demo runs it: a momentum key encoder, a queue of its keys, a symmetric loss.

Each view's queries (the trained encoder) are contrasted with the other view's keys (the key encoder,
``theta_k <- m theta_k + (1 - m) theta_q`` with m = 0.99, no gradient) against the queue of the last 768 keys
alone (MoCo v1/v2's negatives; ``moco.batch_negatives=True`` adds the batch's other keys), the two directions
summed (``moco.symmetric``); both views' keys are then enqueued, 256 per step, so the queue holds the last 3
steps. The embeddings are centred by the global batch mean before the loss (``model.centre``, the default),
which does the work of MoCo's shuffled BatchNorm: without it the stale keys drive every embedding onto one
direction and the encoder collapses (kNN 0.25 at 300 steps; BENCHMARKS.md). No anchor meets a stale key of its
own example (the queue records each key's example id).

Measured (B = 128, learning rate 1e-2, 2 seeds, BENCHMARKS.md): kNN 0.70 at 1,000 steps (NT-Xent at the same
steps: 0.78; untrained encoder 0.27).

    python -m experiments.train --config experiments/configs/moco_mnist1d.py --workdir runs/moco
    python -m experiments.train --config experiments/configs/moco_mnist1d.py:moco.momentum=0.9 --workdir runs/moco_09

``arg``: ``key=value,...`` overrides of any field.

References: He, Fan, Wu, Xie & Girshick, *Momentum Contrast for Unsupervised Visual Representation
Learning*, CVPR 2020; the symmetric loss of the MoCo CIFAR-10 demo (facebookresearch/moco, colab) and
Chen, Xie & He, *An Empirical Study of Training Self-Supervised Vision Transformers* (MoCo v3), ICCV 2021.
"""

from experiments.configs.arguments import apply_arg
from experiments.configs import quickstart, simclr_mnist1d


def get_config(arg=None):
    c = simclr_mnist1d.get_config()
    c.loss.name = "infonce"
    c.loss.temperature = 0.1
    c.moco.enabled = True
    c.moco.momentum = 0.99
    c.moco.queue_size = 768
    c.moco.symmetric = True
    c.batch_size = 128
    c.steps = 1000
    c.optimizer.learning_rate = quickstart.LEARNING_RATE
    c.optimizer.warmup_steps = 20
    return apply_arg(c, arg)
