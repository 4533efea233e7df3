"""CLIP-style two-tower training on (query, document) pairs of the synthetic retrieval corpus.

Separate bag-of-tokens towers for queries and documents, symmetric InfoNCE over in-batch
negatives with CLIP's learnable, clipped temperature (init 0.07, logit scale <= 100).
Evaluated by retrieval over the whole corpus (recall@k, MRR, nDCG; duplicates relevant).

Reference: Radford et al., *Learning Transferable Visual Models From Natural Language
Supervision*, ICML 2021.
"""

from experiments.config_lib import base_config
from experiments.configs.arguments import apply_arg


def get_config(arg=None):
    c = base_config()
    c.task = "pairs"
    c.data.name = "synthetic_retrieval"
    c.model.name = "bag_of_tokens"
    c.model.kwargs = {"dim": 128, "features": (256,)}
    c.model.doc_name = "bag_of_tokens"
    c.model.doc_kwargs = {"dim": 128, "features": (256,)}
    c.model.embed_dim = 128
    c.loss.name = "infonce"
    c.loss.kwargs = {"symmetric": True}
    c.loss.temperature = 0.07
    c.loss.learn_temperature = True
    c.batch_size = 256
    c.steps = 500
    c.optimizer.learning_rate = 2e-3
    c.eval.at_init = True  # result.json's init_eval: the untrained encoder this run must beat
    return apply_arg(c, arg)
