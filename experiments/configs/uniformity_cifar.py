"""Temperature vs uniformity and tolerance (Wang & Liu 2021, Table 1) on CIFAR-10 / CIFAR-100.

``arg``: ``"temperature=<t>[,dataset=cifar10|cifar100]"`` with the paper's grid
t in {0.07, 0.2, 0.3, 0.7, 1.0}: NT-Xent with a ResNet-18 (GroupNorm), batch 256, 200
epochs. The temperature grid and the tabulated metrics (uniformity
``log E exp(-2||z_i - z_j||^2)``, our ``uniformity``, and linear accuracy) are the paper's;
the optimiser (SGD, momentum 0.9, lr 0.3, weight decay 5e-4, cosine) is our choice. We also
log alignment and kNN accuracy. A small-scale analog runs on MNIST-1D in
``experiments/reproduce``.

Reference: Wang & Liu, *Understanding the Behaviour of Contrastive Loss*, CVPR 2021.
"""

from experiments.config_lib import base_config
from experiments.configs.arguments import apply_arg

TEMPERATURES = (0.07, 0.2, 0.3, 0.7, 1.0)


def get_config(arg=None):
    opts = dict(kv.split("=", 1) for kv in filter(None, (arg or "").split(",")))
    t, dataset = float(opts.pop("temperature", 0.2)), opts.pop("dataset", "cifar10")
    if dataset not in ("cifar10", "cifar100"):
        raise ValueError(f"uniformity_cifar: dataset must be cifar10 or cifar100, got {dataset!r}")
    c = base_config()
    c.data.name = dataset
    c.data.view = "image"
    c.data.view_kwargs = {"min_area": 0.2, "strength": 0.4, "p_jitter": 0.8, "p_gray": 0.2}
    c.model.name = "resnet"
    c.model.kwargs = {"stage_sizes": (2, 2, 2, 2), "width": 64}
    c.model.head_hidden = (512,)
    c.model.embed_dim = 128
    c.loss.name = "ntxent"
    c.loss.temperature = t
    c.batch_size = 256
    c.steps = 200 * 50_000 // 256
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 5e-4
    c.checkpoint_every = 2000
    c.log_every = 100
    c.eval.max_examples = 10_000
    return apply_arg(c, ",".join(f"{k}={v}" for k, v in opts.items()))
