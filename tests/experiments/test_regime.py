"""The regime of a step's negatives (issue 40): the share of the softmax's negative mass on each kind of
negative and the effective number of negatives, checked on cases with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments import train as T
from experiments.tasks import common, negatives, pairs, views
from jaxneg import parallel, samplers
from tests.experiments.helpers import config


def _on(devices, f, n_in):
    mesh = parallel.data_mesh(devices=jax.devices()[:devices])
    return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P(parallel.DATA),) * n_in, out_specs=P(), check_vma=False))


@pytest.mark.parametrize("devices", [1, 2])
def test_negative_mass_and_effective_count_of_hand_computed_softmaxes(devices):
    # row 0: logits 0, 0, log 2 over three negatives -> p = 1/4, 1/4, 1/2; row 1: four equal negatives
    logits = np.array([[0.0, 0.0, np.log(2.0), 9.0], [1.0, 1.0, 1.0, 1.0]] * 2, np.float32)
    cand = np.array([[True, True, True, False], [True, True, True, True]] * 2)
    group = np.array([[False, False, True, True], [True, False, False, False]] * 2)
    out = _on(devices, lambda l, c, g: common.negative_mass(l, c, {"g": g}), 3)(logits, cand, group)
    h0 = -(2 * 0.25 * np.log(0.25) + 0.5 * np.log(0.5))
    assert float(out["effective_negatives"]) == pytest.approx((np.exp(h0) + 4.0) / 2, rel=1e-5)
    assert float(out["negative_mass_g"]) == pytest.approx((0.5 + 0.25) / 2, rel=1e-5)  # the 9.0 is no candidate


@pytest.mark.parametrize("devices", [1, 2])
def test_the_pairs_regime_equals_a_numpy_softmax_over_in_batch_and_mined_documents(devices):
    b, k, d, t = 4, 3, 5, 0.2
    rng = np.random.default_rng(0)
    za, zb, zn = rng.normal(size=(b, d)), rng.normal(size=(b, d)), rng.normal(size=(b, k, d))
    groups = np.array([0, 1, 0, 2])              # queries 0 and 2 share a duplicate group
    neg_groups = np.array([[0, 5, 6], [7, 1, 8], [9, 9, 9], [2, 3, 4]])
    keep = np.arange(k)[None, :] < np.array([[2], [3], [1], [0]])  # each query keeps its first few
    hp = T.make_hp(temperature=jnp.float32(t))

    def f(za, zb, zn, g, ng, kp):
        extra = common.StepData(labels=g, negative_groups=ng, negatives_mask=kp, reps=(za, zb, zn))
        return pairs.negative_regime(extra, hp)

    out = _on(devices, f, 6)(*(jnp.asarray(x, jnp.float32) for x in (za, zb, zn)), jnp.asarray(groups),
                             jnp.asarray(neg_groups), jnp.asarray(keep))
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    eff, extra_mass, same_mass = [], [], []
    for i in range(b):
        s = [unit(za[i]) @ unit(zb[j]) / t for j in range(b) if j != i]
        same = [groups[j] == groups[i] for j in range(b) if j != i]
        drawn = [False] * len(s)
        for m in range(k):
            if keep[i, m]:
                s.append(unit(za[i]) @ unit(zn[i, m]) / t)
                same.append(neg_groups[i, m] == groups[i])
                drawn.append(True)
        p = np.exp(np.array(s) - max(s))
        p /= p.sum()
        eff.append(np.exp(-(p * np.log(p)).sum()))
        extra_mass.append(p[np.array(drawn)].sum())
        same_mass.append(p[np.array(same)].sum())
    assert float(out["effective_negatives"]) == pytest.approx(np.mean(eff), rel=1e-5)
    assert float(out["negative_mass_extra"]) == pytest.approx(np.mean(extra_mass), rel=1e-5)
    assert float(out["negative_mass_same_group"]) == pytest.approx(np.mean(same_mass), rel=1e-5)


@pytest.mark.parametrize("devices", [1, 2])
def test_the_views_regime_over_a_bank_counts_every_candidate_once_in_the_losss_layout(devices):
    """Equal embeddings give every candidate the same logit, so the softmax is uniform: the effective number
    is the count of candidates (2B - 2 in-batch views plus the valid bank slots but the anchor's own earlier
    ones), and each share is the fraction of candidates in it."""
    b, size, dim = 8, 12, 4
    c = config("simclr_mnist1d", batch_size=b, **{"negatives.memory": size, "model.centre": "none"})
    bank = samplers.queue_init(size, dim)
    ones = np.ones((8, dim), np.float32)
    for step, chunk in enumerate((np.arange(8), np.arange(8) + 5)):  # ids 5, 6, 7 pushed twice; 12 slots kept
        bank = samplers.queue_push(bank, jnp.asarray(ones), ids=jnp.asarray(chunk), step=step, size=size)
    state = {"memory": bank}
    ids = np.array([5, 12, 40, 41, 42, 43, 0, 44])
    labels = ids % 3
    consts = {"labels": jnp.arange(100, dtype=jnp.int32) % 3}
    hp = T.make_hp(subsample=jnp.int32(0), memory_size=jnp.int32(size), memory_from=jnp.int32(0),
                   temperature=jnp.float32(0.1))

    def f(ids, labels):
        batch = {"id": ids, "label": labels, "step": jnp.int32(3)}
        fixed, more = negatives.candidates(c, jax.random.key(0), state, batch, consts, hp)
        z = jnp.ones((ids.shape[0], dim), jnp.float32)
        extra = more._replace(reps=(z, z, fixed))
        return views.negative_regime(c, {}, extra, hp)

    out = _on(devices, f, 2)(jnp.asarray(ids, jnp.int32), jnp.asarray(labels, jnp.int32))
    slot_ids, slot_labels = np.asarray(bank.ids), np.asarray(bank.ids) % 3
    count, stored, same = [], [], []
    for i in range(2 * b):  # every anchor row: each view of each example
        e = i % b
        batch_cols = [j for j in range(b) if j != e] * 2  # both views of the other examples
        bank_cols = [s for s in range(size) if slot_ids[s] != ids[e]]
        count.append(len(batch_cols) + len(bank_cols))
        stored.append(len(bank_cols) / count[-1])
        same.append((sum(labels[j] == labels[e] for j in batch_cols)
                     + sum(slot_labels[s] == labels[e] for s in bank_cols)) / count[-1])
    assert float(out["effective_negatives"]) == pytest.approx(np.mean(count), rel=1e-5)
    assert float(out["negative_mass_stored"]) == pytest.approx(np.mean(stored), rel=1e-5)
    assert float(out["negative_mass_same_class"]) == pytest.approx(np.mean(same), rel=1e-5)


@pytest.mark.parametrize("devices", [1, 2])
def test_in_batch_duplicates_of_the_positive_are_masked_for_every_sampler_k_0_included(devices):
    """Two queries of one document (or of one duplicate group) meet each other's positive as an in-batch
    "negative": pairs.batch_duplicates masks it, the query's own positive column excepted."""
    groups = np.array([3, 1, 3, 2, 1, 3, 0, 4])
    mask = _on(devices, lambda g: jax.lax.all_gather(pairs.batch_duplicates(g), parallel.DATA, tiled=True), 1)(
        jnp.asarray(groups, jnp.int32))
    want = (groups[:, None] == groups[None, :]) & ~np.eye(8, dtype=bool)
    np.testing.assert_array_equal(np.asarray(mask), want)
    c = config("retrieval_synthetic")
    assert c.sampler.mask_batch_duplicates  # on by default, whatever the sampler


@pytest.mark.parametrize("sampler", ["uniform", "hard_topk"])
def test_the_seen_pool_never_offers_a_document_no_training_query_targets(sampler):
    """sampler.pool = "seen": drawn and mined negatives come only from documents that are some training
    query's positive (the held-out test targets stay out of the negatives); "corpus" offers them too."""
    from tests.experiments.test_pairs import SMALL, _part3

    picked = {}
    for pool in ("seen", "corpus"):
        c = _part3(**{"sampler.name": sampler, "sampler.num_negatives": 3, "sampler.pool": pool,
                      "data.config": {**SMALL, "num_docs": 64, "heldout_docs": 0.5}})
        setup = T.build(c)
        params = T.init_params(setup, jax.random.key(0))
        state = {"params": params, **pairs.init_state(setup, params, jax.random.key(0))}
        consts = pairs.consts(setup)
        batch = {k: jnp.asarray(v) for k, v in pairs.host_batch(setup, 0, 0).items()}
        hp = T.make_hp(num_negatives=jnp.int32(3))
        rows = np.asarray(_on(1, lambda b: pairs._sample(setup, jax.random.key(3), state, b, consts, hp)[0], 1)(batch))
        corpus = np.asarray(consts["corpus"])  # the tokens of each document: match rows back to documents
        picked[pool] = {int(np.flatnonzero((corpus == r).all(1))[0]) for r in rows.reshape(-1, corpus.shape[1])}
        seen = set(np.asarray(setup.train.arrays["doc_id"]).tolist())
    assert picked["seen"] <= seen and picked["corpus"] - seen  # (half the documents are held out)


def test_arms_that_share_a_seed_share_their_initialisation_and_data_order():
    """The paired differences (each arm against the control run of its seed) rest on this: part 3's k = 0 run
    and a sampler's run of one seed start from the same parameters and see the same batches."""
    from experiments.configs import quickstart

    from experiments import spec

    sweep = quickstart.get_config("platform=cpu,parts=3,samplers=hard-uniform,mined=0-3,seeds=2,retrieval_docs=512")
    by = {(p.config.tags.part, p.config.seed): p.config for p in spec.expand(sweep)}
    for seed in (0, 1):
        setups = {part: T.build(by[(part, seed)]) for part in ("in-batch", "hard", "uniform")}
        params = {part: T.init_params(s, jax.random.key(s.config.seed)) for part, s in setups.items()}
        for part in ("hard", "uniform"):
            for x, y in zip(jax.tree.leaves(params["in-batch"]), jax.tree.leaves(params[part])):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
            for step in (0, 7):
                a, b = (pairs.host_batch(setups[p], seed, step) for p in ("in-batch", part))
                np.testing.assert_array_equal(a["doc_id"], b["doc_id"])
    assert not np.array_equal(pairs.host_batch(setups["hard"], 0, 0)["doc_id"], pairs.host_batch(setups["hard"], 1, 0)["doc_id"])


def test_the_step_computes_its_diagnostics_only_on_the_steps_the_loop_reads(tmp_path, monkeypatch):
    """The regime is a second similarity matrix; the step computes the task's diagnostics under a ``cond`` on
    the step, only where the loop logs, evaluates or ends (here steps 2 and 3 of 3: indices 1 and 2), and what
    it logs there is finite. Two members: the branch stays a branch under their ``vmap``."""
    from experiments import tasks
    from tests.experiments.helpers import patch_task

    seen, diagnose = [], tasks.get("views").diagnose

    def counted(setup, state, extra, hp):
        jax.debug.callback(lambda s: seen.append(int(s)), extra.step)
        return diagnose(setup, state, extra, hp)

    patch_task(monkeypatch, "views", diagnose=counted)
    configs = [config("simclr_mnist1d", steps=3, log_every=2, checkpoint_every=3, batch_size=16, seed=s,
                      **{"negatives.memory": 32, "eval.at_init": False, "model.kwargs.channels": (8,),
                         "eval.max_examples": 64, "eval.probe_steps": 2}) for s in (0, 1)]
    T.train_group(configs, [str(tmp_path / str(s)) for s in (0, 1)])
    jax.effects_barrier()
    assert sorted(set(seen)) == [1, 2], seen
    import json

    logged = [r for r in map(json.loads, open(tmp_path / "0" / "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in logged] == [2, 3]
    assert all(np.isfinite(r["diag/effective_negatives"]) and np.isfinite(r["diag/negative_mass_stored"]) for r in logged)
