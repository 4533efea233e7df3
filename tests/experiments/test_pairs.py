"""The pairs task addresses corpus rows by ``doc_id``: checked on loaded tfds splits, stored in any order.

Until the corpus was loaded in id order, every query trained against a random but consistent wrong
document and the pair metrics scored the wrong rows, while the retrieval metrics (which compare groups
row by row) showed a model that could not learn. These tests fail on that code.
"""

import dataclasses

import jax
import numpy as np
import pytest

from experiments import train as T
from experiments.tasks import pairs
from jaxneg import data as jaxneg_data
from tests.experiments.helpers import config

SMALL = {"num_docs": 512, "num_train_queries": 1024, "num_test_queries": 128}
#: the three pairs configs with their own generator settings, on a smaller corpus
CONFIGS = {"clip_pairs": {}, "retrieval_synthetic": {"duplicate_rate": 0.2},
           "recsys_sampled_softmax": {"popularity_exponent": 1.0, "duplicate_rate": 0.0}}


@pytest.fixture
def shuffled_corpus(monkeypatch):
    """Every corpus split loads in a random stored order, as a user's tfds dataset may (the embedded
    builders now store theirs in order, which alone would hide a missing id -> row mapping)."""
    load = jaxneg_data.load

    def shuffled(name, split, **kw):
        d = load(name, split, **kw)
        if split != "corpus":
            return d
        return dataclasses.replace(d, arrays=d.take(np.random.default_rng(0).permutation(len(d))))

    monkeypatch.setattr(jaxneg_data, "load", shuffled)


def _setup(name):
    return T.build(config(name, **{"data.config": {**SMALL, **CONFIGS[name]}}))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_training_positive_is_the_querys_own_document(shuffled_corpus, name):
    setup = _setup(name)
    b = pairs.host_batch(setup, 0, 3)
    doc = setup.corpus.arrays["tokens"][b["doc"]] if setup.doc_by_id else b["doc"]
    # a query is its document's signature and body words, 30% paraphrased into topic words
    shared = np.mean([np.isin(q, d).mean() for q, d in zip(b["q"], doc)])
    assert shared > 0.6, f"only {shared:.2f} of the query words are in the training positive"
    assert np.array_equal(setup.corpus.arrays["group"][b["doc_id"]], b["group"])
    assert np.array_equal(setup.corpus.arrays["doc_id"], np.arange(len(setup.corpus)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_pair_metrics_score_the_documents_the_retrieval_metrics_count_relevant(shuffled_corpus, monkeypatch,
                                                                                   name):
    """evaluate's pairs (z1[i], z2[i]) hold each test query and an embedding of a corpus row of its group."""
    setup = _setup(name)
    seen = {}
    real = pairs.pair_metrics
    monkeypatch.setattr(pairs, "pair_metrics", lambda s, z1, z2, key: seen.update(z2=np.asarray(z2)) or real(s, z1, z2, key))
    params = T.init_params(setup, jax.random.key(0))
    pairs.evaluate(setup, params)
    dm, dp = pairs.doc_tower(setup, params)
    docs = setup.corpus.arrays["doc_id"] if setup.doc_by_id else setup.corpus.arrays["tokens"]
    zc = np.asarray(pairs.encode_all(dm, dp, docs)[1])
    unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)  # noqa: E731
    cos = unit(seen["z2"]) @ unit(zc).T
    row = cos.argmax(1)
    assert np.all(cos.max(1) > 1 - 1e-5)  # every z2 is a corpus row's embedding ...
    test = pairs.first_rows(setup.test, setup.config.eval.max_examples)
    assert np.array_equal(setup.corpus.arrays["group"][row], test["group"])  # ... of a relevant document
