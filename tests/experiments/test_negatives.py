"""The negatives each anchor sees (``config.negatives``): subsampled in-batch, a memory bank, the MoCo queue
(its checks; the instance memory and centring are in test_banks.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments import train as T
from experiments.tasks import negatives
from jaxneg import parallel, samplers
from tests.experiments.helpers import SMALL_SWEEP, config, final_params, leaves

TINY = dict(SMALL_SWEEP, steps=3, checkpoint_every=3, log_every=3, batch_size=8)


def _one_step_negatives(c, bank, ids, labels, step, devices, key=0):
    """``(bank shares of every device, mask of every row, diagnostics)`` of ``negatives.candidates`` on ``devices``."""
    mesh = parallel.data_mesh(devices=jax.devices()[:devices])
    state = {} if bank is None else {"memory" if c.negatives.memory else "queue": bank}
    hp = T.make_hp(subsample=jnp.int32(c.negatives.subsample), memory_size=jnp.int32(c.negatives.memory),
                   queue_size=jnp.int32(c.moco.queue_size), memory_from=jnp.int32(c.negatives.memory_from))
    consts = {"labels": jnp.arange(100, dtype=jnp.int32) % 3}  # the class of example i is i % 3

    def f(ids, labels, key):
        k = jax.random.fold_in(jax.random.key(key), jax.lax.axis_index(parallel.DATA))
        fixed, extra = negatives.candidates(c, k, state, {"id": ids, "label": labels, "step": jnp.int32(step)}, consts, hp)
        return (fixed if fixed is not None else jnp.zeros((1, 1))), extra.mask, extra.diagnostics

    g = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P(parallel.DATA), P(parallel.DATA), P()),
                              out_specs=(P(parallel.DATA), P(parallel.DATA), P())))
    return g(jnp.asarray(ids, jnp.int32), jnp.asarray(labels, jnp.int32), key)


@pytest.mark.parametrize("devices", [1, 2])
def test_subsampled_keeps_exactly_n_in_batch_negatives_and_never_the_positive(devices):
    b, n = 8, 3
    c = config("simclr_mnist1d", **TINY, **{"negatives.subsample": n})
    ids = np.arange(b) + 10
    _, mask, diag = _one_step_negatives(c, None, ids, ids % 3, 0, devices)
    mask = np.asarray(mask)  # [2B, 2B] in the gathered layout (W blocks of [view 1, view 2] of B / W samples)
    per = b // devices
    cols = np.arange(2 * b)
    dev, within = cols // (2 * per), cols % (2 * per)
    col_sample = dev * per + within % per  # the sample of each gathered column
    row_sample = np.concatenate([np.arange(b).reshape(devices, per), np.arange(b).reshape(devices, per)], 1).reshape(-1)
    row_sample = np.concatenate([row_sample[d * 2 * per:(d + 1) * 2 * per] for d in range(devices)])
    for r in range(2 * b):
        others = col_sample != row_sample[r]
        assert (~mask[r] & others).sum() == n  # exactly n negatives kept
        assert not mask[r][~others].any()  # the anchor itself and its positive are never masked
    # the class diagnostic is the fraction of the kept negatives that share the anchor's class
    kept = ~mask & (col_sample[None, :] != row_sample[:, None])
    same = (ids[col_sample][None, :] % 3 == ids[row_sample][:, None] % 3) & kept
    assert float(diag["negatives_same_class"]) == pytest.approx(same.sum() / kept.sum())
    _, other, _ = _one_step_negatives(c, None, ids, ids % 3, 0, devices, key=1)
    assert not np.array_equal(mask, np.asarray(other))  # a fresh subset per step key


@pytest.mark.parametrize("devices", [1, 2])
def test_a_bank_never_offers_an_anchor_its_own_embedding_and_each_slot_appears_once(devices):
    b, size = 8, 12
    c = config("simclr_mnist1d", **TINY, **{"negatives.memory": size})
    bank = samplers.queue_init(size, 4)
    for step, chunk in enumerate((np.arange(8), np.arange(8) + 5)):  # ids 0-7 then 5-12: 5, 6, 7 twice
        bank = samplers.queue_push(bank, jnp.asarray(np.random.default_rng(step).normal(size=(8, 4)), jnp.float32),
                                   ids=jnp.asarray(chunk), step=step, size=size)
    ids = np.array([5, 12, 40, 41, 42, 43, 0, 44])
    fixed, mask, diag = _one_step_negatives(c, bank, ids, ids % 3, 3, devices)
    # the devices' shares of the bank, in device order, are the bank itself, each slot once
    np.testing.assert_array_equal(np.asarray(fixed)[:size], np.asarray(bank.keys))
    mask = np.asarray(mask).reshape(2 * b, devices, 2 * b // devices + size // devices)
    bank_cols = mask[:, :, 2 * b // devices:].reshape(2 * b, size)  # [rows, slots]
    rows_ids = np.concatenate([np.concatenate([ids.reshape(devices, -1)[d]] * 2) for d in range(devices)])
    np.testing.assert_array_equal(bank_cols, np.asarray(bank.ids)[None, :] == rows_ids[:, None])
    assert bank_cols.sum() > 0  # ids 5, 12 and 0 are in the bank
    # the bank is full (8 + 8 pushes into 12 slots): fill 1, ages 3 - step of each slot
    assert float(diag["bank_fill"]) == 1.0
    assert float(diag["bank_age"]) == pytest.approx(np.mean(3 - np.asarray(bank.steps)))
    # with subsample = n, n negatives are drawn from the in-batch columns and the bank together (Wu et al.),
    # never an anchor's own slots
    c.negatives.subsample = 5
    _, mask, _ = _one_step_negatives(c, bank, ids, ids % 3, 3, devices)
    mask = np.asarray(mask).reshape(2 * b, devices, 2 * b // devices + size // devices)
    own_bank = np.asarray(bank.ids)[None, :] == rows_ids[:, None]
    assert (mask[:, :, 2 * b // devices:].reshape(2 * b, size) | ~own_bank).all()
    kept = (~mask).reshape(2 * b, -1).sum(1) - 2  # minus the anchor itself and its positive (never masked)
    np.testing.assert_array_equal(kept, 5)


def test_a_memory_bank_counts_once_full_and_its_fill_and_age_match_a_hand_count(tmp_path):
    """B = 8, 3 steps; the last step sees the pushes of steps 0 and 1: 16 slots of 16 full (age 1.5),
    of 24 two thirds (not yet offered as negatives). A member equals the same point run alone."""
    # on 2 devices: each passes half of the bank, and the pushes gather both devices' embeddings
    members = [config("simclr_mnist1d", **TINY, num_devices=2, **{"negatives.memory": m}) for m in (16, 24)]
    # the CPU default: one member at a time through the group's step, compiled for the padded 24-slot bank
    # (the MoCo test in test_vectorized.py covers padded queues in one vmapped step)
    results = T.train_group(members, [str(tmp_path / "m16"), str(tmp_path / "m24")])
    assert results[0]["program"] == results[1]["program"] and results[1]["time_account"]["compile"] == 0
    for r, fill in zip(results, (1.0, 2 / 3)):
        assert r["eval"]["bank_fill"] == pytest.approx(fill)
        assert r["eval"]["bank_age"] == pytest.approx(1.5)
        assert 0 <= r["eval"]["negatives_same_class"] <= 1
    # a member of the group equals the same point run alone (banks of 16 and 24 share one program)
    alone = T.train(members[0], str(tmp_path / "alone"))
    for x, y in zip(leaves(final_params(str(tmp_path / "m16"))[1]), leaves(final_params(str(tmp_path / "alone"))[1])):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    assert alone["final_loss"] == pytest.approx(results[0]["final_loss"], rel=1e-5)


def test_a_subsampled_member_equals_the_same_point_run_alone(tmp_path):
    members = [config("simclr_mnist1d", **TINY, **{"negatives.subsample": n}) for n in (1, 14)]
    assert T.group_key(members[0]) == T.group_key(members[1])
    assert T.group_key(config("simclr_mnist1d", **TINY)) != T.group_key(members[0])
    dirs = [str(tmp_path / "n1"), str(tmp_path / "n14")]
    results = T.train_group(members, dirs, members_per_step=2)
    alone = T.train(members[0], str(tmp_path / "alone"))
    for x, y in zip(leaves(final_params(dirs[0])[1]), leaves(final_params(str(tmp_path / "alone"))[1])):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    assert alone["final_loss"] == pytest.approx(results[0]["final_loss"], rel=1e-5)
    assert results[0]["final_loss"] < results[1]["final_loss"]  # 1 negative is an easier task than 14


@pytest.mark.parametrize("over, match", [
    ({"negatives.subsample": 15}, "must be <= the 14 in-batch negatives"),
    ({"negatives.subsample": -1}, "negatives.subsample"),
    ({"negatives.memory": 4}, "must be 0 or >= config.batch_size"),
    ({"negatives.memory": 16, "loss.name": "decoupled"}, "needs one of the losses"),
    ({"negatives.instance": True}, "needs loss infonce or additive_margin"),
    ({"negatives.instance": True, "loss.name": "infonce", "negatives.memory": 16}, "a memory of its own"),
    ({"negatives.proximal": 0.5}, "needs config.negatives.instance=True"),
    ({"negatives.instance": True, "loss.name": "infonce", "negatives.instance_momentum": 1.0}, r"in \[0, 1\)"),
    ({"model.centre": "mean"},
     "config.model.centre='mean' is not valid; valid values: 'none', 'batch', 'running', 'batch_norm'"),
    ({"model.centre": "batch_norm", "model.norm_splits": 3}, "norm_splits must be an integer >= 1 that divides"),
    ({"model.norm_splits": 2}, r"norm_splits=2 needs model.centre='batch_norm'"),
    ({"model.centre_momentum": 1.0}, r"centre_momentum must be in \[0, 1\)"),
    ({"loss.name": "infonce", "moco.enabled": True}, "no negatives; set moco.queue_size > 0"),
    ({"loss.name": "infonce", "moco.enabled": True, "moco.symmetric": True, "moco.queue_size": 8},
     r"must be 0 or >= 16 \(each step pushes the batch's keys, of both views"),
    ({"negatives.subsample": 3, "loss.name": "infonce", "loss.kwargs.symmetric": True}, "symmetric=False"),
    ({"negatives.memory": 16, "task": "pairs"}, "belongs to task 'views'"),
])
def test_negatives_configs_are_checked(over, match):
    with pytest.raises(ValueError, match=match):
        T.config_lib.validate(config("simclr_mnist1d", **TINY, **over))
