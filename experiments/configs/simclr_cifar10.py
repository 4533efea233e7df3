"""SimCLR on CIFAR-10, the batch-size grid of Chen et al. 2020, Table B.1 / Figure B.1 (accelerators).

``arg``: ``"batch=<B>[,epochs=<E>]"`` with B in {256, 512, 1024, 2048, 4096, 8192} and E in
{100, 200, ..., 800} (Table B.1's grid), plus any other ``field=value`` overrides. LARS
with learning rate ``1.0 * B / 256`` (square-root scaling is the paper's small-batch
alternative), weight decay 1e-6, temperature 0.5, a CIFAR ResNet-18 (3x3 stem, GroupNorm
instead of BatchNorm so the step is exact under gradient caching and any sharding),
crop + flip + colour jitter (strength 0.5; no blur on CIFAR). Paper numbers are linear
evaluation accuracy; we report kNN and a linear probe on frozen features.

Reference: Chen, Kornblith, Norouzi & Hinton, ICML 2020, Appendix B.9.
"""

from experiments.config_lib import base_config
from experiments.configs.arguments import apply_arg

GRID = {"batch": (256, 512, 1024, 2048, 4096, 8192), "epochs": (100, 200, 300, 400, 500, 600, 700, 800)}


def get_config(arg=None):
    opts = dict(kv.split("=", 1) for kv in filter(None, (arg or "").split(",")))
    batch, epochs = int(opts.pop("batch", 512)), int(opts.pop("epochs", 100))
    if batch not in GRID["batch"] or epochs not in GRID["epochs"]:
        raise ValueError(f"simclr_cifar10: batch must be in {GRID['batch']} and epochs in {GRID['epochs']}, "
                         f"got batch={batch}, epochs={epochs}")
    c = base_config()
    c.data.name = "cifar10"
    c.data.view = "image"
    c.data.view_kwargs = {"min_area": 0.08, "strength": 0.5, "p_jitter": 0.8, "p_gray": 0.2}
    c.model.name = "resnet"
    c.model.kwargs = {"stage_sizes": (2, 2, 2, 2), "width": 64}
    c.model.head_hidden = (512,)
    c.model.embed_dim = 128
    c.loss.name = "ntxent"
    c.loss.temperature = 0.5
    c.batch_size = batch
    c.steps = epochs * 50_000 // batch
    c.optimizer.name = "lars"
    c.optimizer.learning_rate = 1.0 * batch / 256
    c.optimizer.weight_decay = 1e-6
    c.optimizer.warmup_steps = 10 * 50_000 // batch
    c.checkpoint_every = 1000
    c.log_every = 100
    c.eval.max_examples = 10_000
    return apply_arg(c, ",".join(f"{k}={v}" for k, v in opts.items()))
