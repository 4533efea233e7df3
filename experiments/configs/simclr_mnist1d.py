"""SimCLR (NT-Xent over two augmented views) on MNIST-1D: the default experiment.

Trains a 1-D CNN with a projection head for 600 steps at batch 256 (about a minute on 2
CPU cores) and evaluates the backbone features with a kNN classifier and a linear probe.

``arg``: an optional ``key=value,...`` string of quick overrides, e.g. ``"steps=100"``.

Reference: Chen, Kornblith, Norouzi & Hinton, *A Simple Framework for Contrastive Learning
of Visual Representations*, ICML 2020; data: Greydanus & Kobak 2024 (MNIST-1D).
"""

from experiments.config_lib import base_config
from experiments.configs.arguments import apply_arg


def get_config(arg=None):
    c = base_config()
    c.data.name = "mnist1d"
    c.data.config = {"num_samples": 5000, "seed": 42}  # the data size to sweep (80% train)
    c.data.view = "signal"
    c.data.view_kwargs = {"min_crop": 0.6, "max_shift": 8, "scale": 0.2, "noise": 0.2}
    c.model.name = "cnn1d"
    c.model.kwargs = {"channels": (32, 64, 128), "kernel": 5}
    c.model.embed_dim = 64
    c.loss.name = "ntxent"
    c.loss.temperature = 0.1
    c.batch_size = 256
    c.steps = 600
    c.optimizer.learning_rate = 2e-3
    c.eval.at_init = True
    return apply_arg(c, arg)
