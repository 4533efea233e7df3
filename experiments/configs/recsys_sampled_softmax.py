"""Two-tower recommender: sampled softmax with log-Q correction over popularity-sampled items.

Queries (bag of tokens) against an item-id embedding table, on the synthetic corpus with
Zipf-skewed item popularity (``popularity_exponent=1``). Each step shares 512 negatives
drawn ``∝ count^0.75`` (word2vec's unigram^0.75) by the ``popularity`` sampler; the loss
subtracts ``log Q`` from every logit (Yi et al. 2019) and drops accidental hits. Evaluated
by retrieval over all items.

Reference: Yi et al., *Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations*, RecSys 2019.
"""

from experiments.config_lib import base_config
from experiments.configs.arguments import apply_arg


def get_config(arg=None):
    c = base_config()
    c.task = "pairs"
    c.data.name = "synthetic_retrieval"
    c.data.config = {"popularity_exponent": 1.0, "duplicate_rate": 0.0}
    c.model.name = "bag_of_tokens"
    c.model.kwargs = {"dim": 64, "features": (128,)}
    c.model.doc_name = "id_embedding"
    c.model.doc_kwargs = {"dim": 64}
    c.model.embed_dim = 64
    c.loss.name = "sampled_softmax"
    c.loss.temperature = 0.05
    c.sampler.name = "popularity"
    c.sampler.num_negatives = 512
    c.sampler.kwargs = {"alpha": 0.75}
    c.batch_size = 256
    c.steps = 500
    c.optimizer.learning_rate = 3e-3
    c.eval.at_init = True  # result.json's init_eval: the untrained encoder this run must beat
    return apply_arg(c, arg)
