"""The pairs task addresses corpus rows by ``doc_id``: checked on loaded tfds splits, stored in any order.

Until the corpus was loaded in id order, every query trained against a random but consistent wrong
document and the pair metrics scored the wrong rows, while the retrieval metrics (which compare groups
row by row) showed a model that could not learn. These tests fail on that code.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments import train as T
from experiments.tasks import pairs
from jaxneg import data as jaxneg_data
from jaxneg import parallel
from tests.experiments.helpers import config, final_params, leaves

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


def _part3(**over):
    """Part 3 of the main job on a small corpus: the hard_topk sampler, the first k of 3 mined negatives."""
    from experiments.configs import quickstart

    c = config("retrieval_synthetic")
    small = {**quickstart.retrieval(steps=3, max_k=3), "sampler.name": "hard_topk", "sampler.kwargs": {},
             "data.config": {**quickstart.RETRIEVAL_DATA, **SMALL}, "batch_size": 16, "log_every": 3,
             "checkpoint_every": 3, "sampler.refresh_every": 2, "eval.max_examples": 64, "eval.at_init": False}
    from experiments.config_lib import set_field

    for k, v in {**small, **over}.items():
        set_field(c, k, v)
    return c


@pytest.mark.slow
def test_every_k_of_a_sampler_trains_in_one_program_and_equals_its_run_alone(tmp_path):
    members = [_part3(**{"sampler.num_negatives": k}) for k in (0, 1, 3)]
    assert len({T.group_key(c) for c in members}) == 1
    dirs = [str(tmp_path / f"k{c.sampler.num_negatives}") for c in members]
    results = T.train_group(members, dirs, members_per_step=1)  # one at a time: bit-identical to alone
    assert results[0]["program"] == results[2]["program"]
    assert [r["time_account"]["compile"] == 0 for r in results] == [False, True, True]  # compiled once
    for c, d, r in zip(members, dirs, results):
        alone = T.train(c, str(tmp_path / f"alone{c.sampler.num_negatives}"))
        assert alone["final_loss"] == r["final_loss"]
        for x, y in zip(leaves(final_params(d)[1]), leaves(final_params(str(tmp_path / f"alone{c.sampler.num_negatives}"))[1])):
            np.testing.assert_array_equal(x, y)
    losses = [r["final_loss"] for r in results]
    assert losses[0] < losses[1] < losses[2]  # more negatives, a larger loss
    assert results[0]["eval"]["false_negative_rate"] == 0.0  # k = 0 keeps none


def test_the_false_negative_rate_is_the_share_of_kept_negatives_from_the_positives_group():
    """The step's diagnostic against a brute-force count over the mined indices it returns."""
    c = _part3(**{"sampler.num_negatives": 2, "data.config": {**SMALL, "num_docs": 64, "duplicate_rate": 0.5}})
    setup = T.build(c)
    params = T.init_params(setup, jax.random.key(0))
    state = {"params": params, **pairs.init_state(setup, params, jax.random.key(0))}
    consts = pairs.consts(setup)
    b = pairs.host_batch(setup, 0, 0)
    batch = {k: jnp.asarray(v) for k, v in b.items()}
    hp = T.make_hp(num_negatives=jnp.int32(2))
    mesh = parallel.data_mesh(devices=jax.devices()[:1])

    def f(batch):
        docs, extra = pairs._sample(setup, jax.random.key(3), state, batch, consts, hp)
        return docs, extra.negatives_mask, extra.diagnostics["false_negative_rate"]

    docs, used, rate = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P(parallel.DATA),), out_specs=P(),
                                             check_vma=False))(batch)
    tokens = setup.corpus.arrays["tokens"]
    rows = np.array([[np.flatnonzero((tokens == d).all(1))[0] for d in q] for q in np.asarray(docs)])
    used = np.asarray(used)
    assert used.sum() == 2 * len(rows) and not used[:, 2:].any()  # the first k of max_negatives
    group = setup.corpus.arrays["group"]
    same = (group[rows] == b["group"][:, None]) & used
    assert float(rate) == pytest.approx(same.sum() / used.sum())
    assert same.sum() > 0  # (half the corpus are duplicates: the hardest negatives include some)
