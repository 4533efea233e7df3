"""MoCo on MNIST-1D: InfoNCE against a momentum key encoder and a FIFO queue of its earlier keys.

The third source of negatives of the main job's negative-count question, kept as a config of its own:
at the main job's budget (B = 128, 300 steps, learning rate 1e-2) the MoCo encoder does not learn (kNN
0.19-0.23 at m = 0.5 / 0.9 / 0.99 with a 768-key queue, below the untrained encoder's 0.27;
BENCHMARKS.md), so the quickstart leaves it out. Set so that the queue trains as well as it can: it
fills once within the first ``queue_size / batch_size`` steps (6 of 300), the momentum keeps the key
encoder within about ``1 / (1 - m)`` = 100 steps of the query encoder, and no anchor meets a stale
key of its own example (the queue records each key's example id).

    python -m experiments.train --config experiments/configs/moco_mnist1d.py --workdir runs/moco
    python -m experiments.train --config experiments/configs/moco_mnist1d.py:moco.momentum=0.9 --workdir runs/moco_09

``arg``: ``key=value,...`` overrides of any field.

Reference: He, Fan, Wu, Xie & Girshick, *Momentum Contrast for Unsupervised Visual Representation
Learning*, CVPR 2020.
"""

from experiments.config_lib import apply_arg
from experiments.configs import quickstart, simclr_mnist1d


def get_config(arg=None):
    c = simclr_mnist1d.get_config()
    c.loss.name = "infonce"
    c.loss.temperature = 0.1
    c.moco.enabled = True
    c.moco.momentum = 0.99
    c.moco.queue_size = 768
    c.batch_size = 128
    c.steps = 300
    c.optimizer.learning_rate = quickstart.LEARNING_RATE
    c.optimizer.warmup_steps = 20
    return apply_arg(c, arg)
