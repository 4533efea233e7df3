"""Debiased contrastive loss (Chuang et al. 2020) and hard negatives (HCL, Robinson et al. 2021) on STL-10.

``arg``: ``"tau_plus=<t>[,beta=<b>]"``: the class-prior τ⁺ (the papers' grid is
0.01..0.15 with τ⁺ = 0 the biased SimCLR baseline); ``beta > 0`` selects the hard-negative
loss with concentration β (HCL's STL-10 setting: β = 1, τ⁺ = 0.1). SimCLR setting of both
papers: batch 256, temperature 0.5, 400 epochs on train + unlabelled (105k images), Adam
1e-3, weight decay 1e-6; our ResNet-18 uses GroupNorm (see simclr_cifar10). Papers report
linear evaluation on the 5k/8k labelled splits; we report kNN and a linear probe.

References: Chuang et al., *Debiased Contrastive Learning*, NeurIPS 2020 (Table/Fig. 2);
Robinson et al., *Contrastive Learning with Hard Negative Samples*, ICLR 2021 (Table 1).
"""

from experiments.config_lib import base_config
from experiments.configs.arguments import apply_arg


def get_config(arg=None):
    opts = dict(kv.split("=", 1) for kv in filter(None, (arg or "").split(",")))
    tau_plus, beta = float(opts.pop("tau_plus", 0.1)), float(opts.pop("beta", 0.0))
    c = base_config()
    c.data.name = "stl10"
    c.data.train_split = "train+unlabelled"
    c.data.eval_train_split = "train"
    c.data.view = "image"
    c.data.view_kwargs = {"min_area": 0.08, "strength": 0.4, "p_jitter": 0.8, "p_gray": 0.2}
    c.model.name = "resnet"
    c.model.kwargs = {"stage_sizes": (2, 2, 2, 2), "width": 64}
    c.model.head_hidden = (512,)
    c.model.embed_dim = 128
    c.loss.name = "hard_negative" if beta > 0 else "debiased"
    c.loss.temperature = 0.5
    c.loss.kwargs = {"tau_plus": tau_plus, **({"beta": beta} if beta > 0 else {})}
    c.batch_size = 256
    c.steps = 400 * 105_000 // 256
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_steps = 0
    c.checkpoint_every = 2000
    c.log_every = 100
    c.eval.max_examples = 8000
    return apply_arg(c, ",".join(f"{k}={v}" for k, v in opts.items()))
