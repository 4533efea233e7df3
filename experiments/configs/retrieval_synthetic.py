"""Dense retrieval with mined hard negatives on a corpus with 20% near-duplicate documents.

A shared bag-of-tokens tower; InfoNCE over in-batch negatives plus 4 hard negatives per
query mined exactly (``hard_topk``) from a corpus index re-encoded every 50 steps
(ANCE-style). A fifth of the documents are near-duplicates of another one: mined
"negatives" from the positive's group are false negatives. The ``relative_margin`` filter
(keep ``s <= s+ - m |s+|``, as in sentence-transformers' ``mine_hard_negatives``) drops
candidates scored too close to the positive. ``arg`` e.g. ``"sampler.kwargs.relative_margin=0.0"``
turns the filter off; ``"loss.supervised=True"`` masks the known duplicates (an oracle).

References: Xiong et al., *Approximate Nearest Neighbor Negative Contrastive Learning for
Dense Text Retrieval* (ANCE), ICLR 2021; Qu et al., *RocketQA*, NAACL 2021 (false negatives).
"""

from experiments.config_lib import base_config
from experiments.configs.arguments import apply_arg


def get_config(arg=None):
    c = base_config()
    c.task = "pairs"
    c.data.name = "synthetic_retrieval"
    c.data.config = {"duplicate_rate": 0.2}
    c.model.name = "bag_of_tokens"
    c.model.kwargs = {"dim": 128, "features": (256,)}
    c.model.embed_dim = 128
    c.loss.name = "infonce"
    c.loss.temperature = 0.05
    c.sampler.name = "hard_topk"
    c.sampler.num_negatives = 4
    c.sampler.refresh_every = 50
    c.sampler.kwargs = {"relative_margin": 0.05}
    c.batch_size = 128
    c.steps = 500
    c.optimizer.learning_rate = 2e-3
    c.eval.at_init = True  # result.json's init_eval: the untrained encoder this run must beat
    return apply_arg(c, arg)
