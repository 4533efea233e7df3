"""Negatives beyond the batch: the collapse diagnostic and centring, MoCo as facebookresearch/moco's builder.py
runs it, Wu et al.'s instance memory, and every bank and centre equal on 1 and 2 devices."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.sharding import PartitionSpec as P

from experiments import sweep
from experiments import train as T
from experiments.tasks import negatives, views
from jaxneg import parallel, samplers
from tests.experiments.helpers import SMALL_SWEEP, config, final_params, leaves

#: a tiny SimCLR with a memory bank of two batches: 30 steps are enough for the uncentred encoder to collapse
BANK = dict(SMALL_SWEEP, steps=30, log_every=10, checkpoint_every=30, batch_size=32,
            **{"negatives.memory": 64, "optimizer.learning_rate": 1e-2, "optimizer.warmup_steps": 5})


def _rows(result, n):
    """A run's rows of ``results.csv`` as the sweep's report reads them."""
    metrics = {f"eval/{k}": v for k, v in result["eval"].items()} | {"final_loss": result["final_loss"]}
    return pd.DataFrame({"metric": list(metrics), "value": list(metrics.values()), "negatives_per_anchor": n})


@pytest.mark.slow
def test_a_bank_without_centring_collapses_and_the_diagnostic_says_so(tmp_path):
    """Measured: the mean normalised embedding reaches length 0.97 without centring and stays at 0.19 with the
    batch centre (30 steps, lr 1e-2)."""
    n = 2 * 32 - 2 + 64
    bare = T.train(config("simclr_mnist1d", **BANK, **{"model.centre": "none"}), str(tmp_path / "none"))
    assert bare["eval"]["embedding_mean_norm"] > sweep.COLLAPSE_NORM
    assert sweep.collapsed(_rows(bare, n)).startswith("mean norm 0.9")
    centred = T.train(config("simclr_mnist1d", **BANK, **{"model.centre": "batch"}), str(tmp_path / "batch"))
    assert centred["eval"]["embedding_mean_norm"] < 0.5 and sweep.collapsed(_rows(centred, n)) == ""
    logged = [r for r in map(__import__("json").loads, open(tmp_path / "none" / "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in logged] == [10, 20, 30] and logged[-1]["diag/embedding_mean_norm"] > 0.9
    assert -1 <= logged[-1]["diag/bank_drift"] <= 1
    # the loss rule: a final loss within 1% of log(n + 1) is flagged whatever the norm says
    flat = _rows(dict(centred, final_loss=float(np.log(n + 1)) * 0.995), n)
    assert sweep.collapsed(flat) == f"loss {np.log(n + 1) * 0.995:.3f} = log(n + 1)"


def _shard(f, devices, n_in):
    mesh = parallel.data_mesh(devices=jax.devices()[:devices])
    return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P(parallel.DATA),) * n_in, out_specs=P(), check_vma=False))


@pytest.mark.parametrize("devices", [1, 2])
def test_the_instance_memory_contrasts_each_anchor_with_its_own_slot_against_m_drawn_slots(devices):
    """Wu et al. 2018 with the softmax over m drawn slots: loss_i = -log e^{f_i.v_i/t} / (e^{f_i.v_i/t} +
    sum_{j drawn} e^{f_i.v_j/t}) + lambda |f_i - v_i|^2, never the anchor's own slot among the drawn ones,
    no other in-batch column (float64 NumPy)."""
    n_items, b, d, m, t, lam = 12, 4, 3, 5, 0.2, 0.3
    c = config("simclr_mnist1d", **{"loss.name": "infonce", "negatives.instance": True, "negatives.subsample": m,
                                    "model.centre": "none", "loss.temperature": t, "batch_size": b})
    mem = samplers.instance_init(n_items, d, key=jax.random.key(1))
    state = {"instance": mem}
    ids = np.array([3, 11, 0, 7])
    f = np.random.default_rng(0).standard_normal((b, d))
    hp = T.make_hp(subsample=jnp.int32(m), memory_from=jnp.int32(0), proximal=jnp.float32(lam),
                   temperature=jnp.float32(t))
    objective = views.make_objective(types.SimpleNamespace(config=c))

    def step(ids, f):
        batch = {"id": ids, "step": jnp.int32(0)}
        fixed, extra = negatives.candidates(c, jax.random.key(5), state, batch, {}, hp)
        pos = jax.lax.stop_gradient(state["instance"].keys[ids])  # what views.inputs hands the encoder
        loss = objective((f, pos, fixed), None, extra._replace(ids=ids), hp)  # (the step's with_fixed)
        return loss, jax.lax.all_gather(extra.mask, parallel.DATA, tiled=True)

    loss, mask = _shard(step, devices, 2)(jnp.asarray(ids, jnp.int32), jnp.asarray(f, jnp.float32))
    mask = np.asarray(mask).reshape(b, devices, b // devices + n_items // devices)
    in_batch = mask[:, :, : b // devices].reshape(b, b)
    slots = mask[:, :, b // devices:].reshape(b, n_items)
    np.testing.assert_array_equal(in_batch, ~np.eye(b, dtype=bool))  # only the positive column stays
    assert slots[np.arange(b), ids].all() and ((~slots).sum(1) == m).all()  # m drawn slots, never its own
    v = np.asarray(mem.keys, np.float64)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    q = unit(f)
    want = []
    for i in range(b):
        logits = np.concatenate([[q[i] @ v[ids[i]]], v[~slots[i]] @ q[i]]) / t
        want.append(np.log(np.sum(np.exp(logits))) - logits[0] + lam * np.sum((q[i] - v[ids[i]]) ** 2))
    assert float(loss) == pytest.approx(np.mean(want), rel=1e-5)


@pytest.mark.parametrize("devices", [1, 2])
def test_batch_norm_standardises_each_split_and_the_shuffled_partition_is_the_same_on_every_device(devices):
    """``model.centre='batch_norm'``: ``(z - mu_g) / sqrt(var_g + eps)`` per group of rows (float64 NumPy), the
    groups ``S`` consecutive blocks of the global batch, or (MoCo's keys) a random partition into such blocks
    drawn from a key that has no device index; its gradient flows through the statistics. 1 and 2 devices."""
    b, d, splits = 8, 3, 2
    c = types.SimpleNamespace(model=types.SimpleNamespace(centre="batch_norm", norm_splits=splits))
    z = np.random.default_rng(0).normal(size=(b, d)) * np.array([1.0, 3.0, 0.2]) + 5.0
    w = np.random.default_rng(1).normal(size=(b, d))

    def reference(groups):
        out = np.empty_like(z)
        for g in range(splits):
            rows = groups == g
            out[rows] = (z[rows] - z[rows].mean(0)) / np.sqrt(z[rows].var(0) + views.NORM_EPS)
        return out

    def run(key):
        def f(z, w):
            groups = views.split_groups(z.shape[0], splits, key)
            # (this device's share of sum(w * BN(z)); the statistics' psum carries the other devices' back)
            grad = jax.grad(lambda z: jnp.sum(views.centred(c, z, {}, groups=groups) * w))(z)
            return (jax.lax.all_gather(groups, parallel.DATA, tiled=True), jax.lax.all_gather(
                views.centred(c, z, {}, groups=groups, trained=False), parallel.DATA, tiled=True),
                    jax.lax.all_gather(grad, parallel.DATA, tiled=True))
        return _shard(f, devices, 2)(jnp.asarray(z, jnp.float32), jnp.asarray(w, jnp.float32))

    for key in (None, jax.random.key(3)):
        groups, out, grad = map(np.asarray, run(key))
        assert np.bincount(groups, minlength=splits).tolist() == [b // splits] * splits
        if key is None:
            assert groups.tolist() == [0] * 4 + [1] * 4
        else:  # one permutation of the global batch, whatever the device count
            assert groups.tolist() == (np.asarray(jax.random.permutation(key, b)) // (b // splits)).tolist()
        np.testing.assert_allclose(out, reference(groups), rtol=1e-4, atol=1e-5)
        # the gradient of sum(w * BN(z)) through the statistics (the textbook BatchNorm backward)
        want = np.empty_like(z)
        for g in range(splits):
            rows = groups == g
            xhat, inv = reference(groups)[rows], 1 / np.sqrt(z[rows].var(0) + views.NORM_EPS)
            want[rows] = inv * (w[rows] - w[rows].mean(0) - xhat * (w[rows] * xhat).mean(0))
        np.testing.assert_allclose(grad, want, rtol=1e-3, atol=1e-4)


#: every bank and every centre once (the batch centre, the default, with the instance memory)
CASES = {
    "memory_running_centre": {"negatives.memory": 16, "model.centre": "running"},
    "moco_symmetric_shuffle_batch_norm": {"loss.name": "infonce", "moco.enabled": True, "moco.queue_size": 32,
                                          "moco.symmetric": True, "model.centre": "batch_norm",
                                          "model.norm_splits": 2},
    "instance_memory_batch_centre": {"loss.name": "infonce", "negatives.instance": True, "negatives.proximal": 0.5},
}
#: views without randomness: each device draws its views (and subsets) from its own key, so only deterministic
#: views give the same batches on 1 and 2 devices
IDENTITY = {"min_crop": 1.0, "max_shift": 0, "scale": 0.0, "noise": 0.0}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.slow
def test_banks_and_centres_on_two_devices_equal_one_device(tmp_path, case):
    tiny = dict(SMALL_SWEEP, steps=3, log_every=3, checkpoint_every=3, batch_size=8, **{"data.view_kwargs": IDENTITY})
    runs = {w: T.train(config("simclr_mnist1d", **tiny, num_devices=w, **CASES[case]), str(tmp_path / str(w)))
            for w in (1, 2)}
    assert runs[1]["final_loss"] == pytest.approx(runs[2]["final_loss"], rel=1e-5)
    for x, y in zip(*(leaves(final_params(str(tmp_path / str(w)))[1]) for w in (1, 2))):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    for k in ("embedding_mean_norm", "bank_drift", "bank_fill", "bank_age"):
        assert runs[1]["eval"][k] == pytest.approx(runs[2]["eval"][k], rel=1e-4, abs=1e-6)



@pytest.mark.slow
def test_moco_matches_facebookresearch_builder_step_for_step(tmp_path):
    """A JAX port of facebookresearch/moco's ``MoCo.forward`` (builder.py) and ``torch.optim.SGD``: in each step
    the key encoder first moves towards the query encoder, keys are the key encoder's normalised outputs,
    logits ``[q.k+, q.queue] / T`` with label 0, then the keys are enqueued at ``ptr`` and ``ptr += B``. Our
    views task (asymmetric, queue-only negatives, no centre) must give the same query encoder, key encoder and
    queue after 3 steps, on a tiny CNN with deterministic views (so both encoders see the same batches)."""
    import orbax.checkpoint as ocp

    b, size, m, t = 8, 32, 0.9, 0.2  # (builder.py asserts K % B == 0)
    c = config("simclr_mnist1d", **dict(SMALL_SWEEP, steps=3, log_every=3, checkpoint_every=3, batch_size=b),
               **{"data.view_kwargs": IDENTITY, "loss.name": "infonce", "moco.enabled": True, "moco.queue_size": size,
                  "moco.momentum": m, "loss.temperature": t, "model.centre": "none", "optimizer.name": "sgd",
                  "optimizer.learning_rate": 0.5, "optimizer.momentum": 0.9, "optimizer.weight_decay": 1e-3,
                  "optimizer.schedule": "constant", "optimizer.warmup_steps": 0})
    T.train(c, str(tmp_path))
    ours = ocp.StandardCheckpointer().restore(str(tmp_path / "checkpoints" / "3" / "default"))

    setup = T.build(c)
    key = jax.random.key(c.seed)
    theta_q = T.init_params(setup, key)["query"]
    theta_k = jax.tree.map(jnp.copy, theta_q)  # param_k.data.copy_(param_q.data)
    queue = views.init_state(setup, {"query": theta_q}, key)["queue"].keys  # randn, normalised (dim=0 there)
    ptr, buf, lr = 0, jax.tree.map(jnp.zeros_like, theta_q), T.make_optimizer(c)[1]
    def unit(p, x):  # F.normalize(encoder(x), dim=1)
        z = setup.query_model.apply(p, x)[1]
        return z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    for step in range(3):
        x = jnp.asarray(views.host_batch(setup, c.seed, step)["x"])  # im_q = im_k (identity views)
        theta_k = jax.tree.map(lambda k, q: k * m + q * (1.0 - m), theta_k, theta_q)  # _momentum_update_key_encoder
        k = unit(theta_k, x)

        def loss(p):
            q = unit(p, x)
            logits = jnp.concatenate([jnp.sum(q * k, 1, keepdims=True), q @ queue.T], 1) / t
            return jnp.mean(jax.nn.logsumexp(logits, 1) - logits[:, 0])  # CrossEntropyLoss, labels 0

        g = jax.grad(loss)(theta_q)
        d = jax.tree.map(lambda g, p: g + c.optimizer.weight_decay * p, g, theta_q)  # SGD: weight decay,
        buf = jax.tree.map(lambda b_, d_: c.optimizer.momentum * b_ + d_, buf, d)       # momentum,
        theta_q = jax.tree.map(lambda p, b_: p - lr(step) * b_, theta_q, buf)           # step
        queue = queue.at[ptr:ptr + b].set(k)  # _dequeue_and_enqueue
        ptr = (ptr + b) % size
    theta_k = jax.tree.map(lambda k, q: k * m + q * (1.0 - m), theta_k, theta_q)  # what step 4's forward uses

    close = lambda a, b_: [np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6)  # noqa: E731
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b_))]
    close(ours["params"]["query"], theta_q)
    close(ours["key_params"], theta_k)
    held = np.asarray(ours["queue"]["keys"])  # (restored without a template: dicts)
    np.testing.assert_allclose(held / np.linalg.norm(held, axis=1, keepdims=True), queue, rtol=2e-4, atol=2e-6)
    assert int(ours["queue"]["ptr"]) == ptr == (3 * b) % size
