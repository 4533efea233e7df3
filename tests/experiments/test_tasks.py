"""The task registry (each task one record; config validation reads its rules; train never names a task) and
the member-field table."""

import dataclasses
import inspect

import numpy as np
import pytest

from experiments import config_lib, tasks, train
from tests.experiments.helpers import config


def test_the_registered_tasks_and_a_clear_error_for_an_unknown_one():
    assert tasks.TASKS.names() == ["pairs", "views"]
    assert all(isinstance(tasks.get(n), tasks.Task) for n in tasks.TASKS)
    with pytest.raises(ValueError, match="config.task='nope' is not valid; valid values: 'pairs', 'views'"):
        tasks.get("nope")
    with pytest.raises(ValueError, match="config.task='nope' is not valid"):
        config_lib.validate(config("simclr_mnist1d", task="nope"))
    with pytest.raises(ValueError, match="task 'views' is already registered"):
        tasks.register(dataclasses.replace(tasks.get("views")))


def test_config_validation_applies_each_tasks_own_rules():
    with pytest.raises(ValueError, match="config.moco needs task='views'"):
        config_lib.validate(config("retrieval_synthetic", **{"moco.enabled": True}))
    with pytest.raises(ValueError, match="draws documents: it needs task='pairs'"):
        config_lib.validate(config("simclr_mnist1d", **{"sampler.name": "uniform", "sampler.num_negatives": 4}))
    with pytest.raises(ValueError, match="config.data.view='blur' is not valid"):
        config_lib.validate(config("simclr_mnist1d", **{"data.view": "blur"}))
    assert tasks.get("views").needs(config("simclr_mnist1d")) == ("x",)
    assert tasks.get("views").needs(config("simclr_mnist1d", **{"loss.supervised": True})) == ("x", "label")
    mined = config("retrieval_synthetic")  # hard_topk: the index is re-encoded every refresh_every steps
    assert tasks.get("pairs").refresh_every(mined) == mined.sampler.refresh_every == 50
    assert tasks.get("pairs").refresh_every(config("retrieval_synthetic", **{"sampler.name": "uniform"})) == 0
    assert tasks.get("views").refresh_every(config("simclr_mnist1d")) == 0


def test_the_loop_and_the_config_never_ask_which_task_they_hold():
    for source in (inspect.getsource(train), inspect.getsource(config_lib.validate)):
        for text in ('task == "', "task != \"", "tasks.views", "tasks.pairs", '"views"', '"pairs"'):
            assert text not in source, text


# ----------------------------------------------------------------------------- member fields


def test_the_member_table_gives_the_group_key_and_the_traced_hyperparameters():
    base = config("simclr_mnist1d")
    varied = [config("simclr_mnist1d", **{m.field: value}) for m, value in zip(
        train.MEMBERS, (3, 0.3, 1.0, 0.5, 0.01, 0.5, 0.5, 0, False))]
    assert all(train.group_key(c) == train.group_key(base) for c in varied)
    assert train.group_key(config("simclr_mnist1d", batch_size=64)) != train.group_key(base)
    hp = train.hparams(config("simclr_mnist1d", seed=3, **{"loss.temperature": 0.3}))
    assert set(hp) == {m.name for m in train.MEMBERS if m.name} | {"loss_kwargs"}
    assert hp["seed"].dtype == np.int32 and hp["seed"] == 3 and hp["temperature"] == np.float32(0.3)


def test_a_static_loss_keyword_splits_programs_and_every_other_float_keyword_traces():
    """``static`` is the registry's word on whether a float keyword may be a traced array: the other
    float keywords of every trainable loss are checked here under jit, so the metadata cannot drift."""
    import jax
    import jax.numpy as jnp

    from jaxneg import LOSSES

    hard = lambda **kw: config("simclr_mnist1d", **{"loss.name": "hard_negative", **kw})
    assert train.group_key(hard(**{"loss.kwargs.beta": 0.5})) != train.group_key(hard(**{"loss.kwargs.beta": 1.0}))
    assert (train.group_key(hard(**{"loss.kwargs.tau_plus": 0.1}))
            == train.group_key(hard(**{"loss.kwargs.tau_plus": 0.2})))
    rng = np.random.default_rng(0)
    unit = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    q, k, labels = unit(8, 4), unit(8, 4), jnp.asarray(rng.integers(0, 3, 8), jnp.int32)
    args = {"pair": (q, k), "labelled": (q, labels), "views": (jnp.stack([q, k], 1), labels),
            "sampled": (q, k, unit(8, 3, 4))}
    checked = []
    for name in LOSSES.select(inputs=tuple(args)):
        entry = LOSSES.info(name)
        assert set(entry.static) <= set(entry.keywords), name
        for kw, default in entry.keywords.items():
            if isinstance(default, float) and kw not in entry.static and kw not in ("temperature", "logit_scale",
                                                                                  "logit_bias"):
                jax.jit(lambda v: entry.fn(*args[entry.inputs], **{kw: v}))(jnp.float32(default or 0.1))
                checked.append(f"{name}.{kw}")
    assert "debiased.tau_plus" in checked and "hard_negative.beta" not in checked


def test_vectorised_evaluation_equals_one_member_at_a_time():
    """The members of a program are evaluated by one vmapped evaluation (encodings, kNN, the linear
    probe, every metric), each equal to its evaluation alone."""
    import jax

    from tests.experiments.helpers import SMALL_SWEEP

    configs = [config("simclr_mnist1d", **SMALL_SWEEP, seed=s) for s in (0, 1, 2)]
    setup = train.build(configs[0])
    setups = [setup.member(c) for c in configs]
    params = [train.init_params(s, jax.random.key(s.config.seed)) for s in setups]
    together = train.evaluate_members(setups, train._stack(params))
    for s, p, t in zip(setups, params, together):
        alone = train.evaluate(s, p)
        assert set(alone) == set(t) >= {"knn_accuracy", "linear_probe_accuracy", "rankme", "contrastive_accuracy"}
        for k, v in alone.items():
            assert t[k] == pytest.approx(v, rel=1e-6, abs=1e-6), k
    assert together[0] != together[1]  # each member its own parameters and evaluation key
