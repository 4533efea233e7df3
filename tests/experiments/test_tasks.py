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
    # a task's own fields (Task.config) must keep their defaults under another task: nothing would read them
    with pytest.raises(ValueError, match=r"config.moco.enabled=True belongs to task 'views'; with "
                                         r"config.task='pairs' nothing reads it \(leave it at False\)"):
        config_lib.validate(config("retrieval_synthetic", **{"moco.enabled": True}))
    with pytest.raises(ValueError, match="config.sampler.name='uniform' belongs to task 'pairs'"):
        config_lib.validate(config("simclr_mnist1d", **{"sampler.name": "uniform", "sampler.num_negatives": 4}))
    assert set(config_lib.task_fields()) >= {"moco.queue_size", "negatives.memory", "sampler.name", "model.centre"}
    with pytest.raises(ValueError, match="config.data.view='blur' is not valid"):
        config_lib.validate(config("simclr_mnist1d", **{"data.view": "blur"}))
    assert tasks.get("views").needs(config("simclr_mnist1d")) == ("x",)
    assert tasks.get("views").needs(config("simclr_mnist1d", **{"loss.supervised": True})) == ("x", "label")
    mined = config("retrieval_synthetic")  # hard_topk: the index is re-encoded every refresh_every steps
    assert tasks.get("pairs").refresh_every(mined) == mined.sampler.refresh_every == 50
    assert tasks.get("pairs").refresh_every(config("retrieval_synthetic", **{"sampler.name": "uniform"})) == 0
    assert tasks.get("views").refresh_every(config("simclr_mnist1d")) == 0


def test_the_loop_and_the_config_never_ask_which_task_they_hold():
    import pkgutil

    from experiments import sweep

    schema = inspect.getsource(config_lib.base_config)  # the loop's fields only: each task declares its own
    assert "moco" not in schema and "sampler." not in schema and "negatives." not in schema
    modules = [inspect.getsource(config_lib.validate), inspect.getsource(config_lib._other_tasks_fields)] + [
        inspect.getsource(__import__(f"{pkg.__name__}.{m.name}", fromlist=["_"]))
        for pkg in (train, sweep) for m in pkgutil.iter_modules(pkg.__path__) if m.name != "__main__"]
    for source in modules:
        for text in ('task == "', "task != \"", "tasks.views", "tasks.pairs", '"views"', '"pairs"', "moco", "sampler."):
            assert text not in source, text


# ----------------------------------------------------------------------------- member fields


def test_the_member_table_gives_the_group_key_and_the_traced_hyperparameters():
    base = config("simclr_mnist1d")
    def other(field, value):  # another value of the same type (a zero int stays zero: whether it is zero is a shape)
        return (not value if isinstance(value, bool) else value * 0.5 + 0.25 if isinstance(value, float)
                else value + 3 if value or field == "seed" else value)

    varied = [config("simclr_mnist1d", **{m.field: other(m.field, config_lib.get_field(base, m.field))})
              for m in train.MEMBERS]
    assert {m.field for m in train.MEMBERS} >= {"seed", "loss.temperature", "moco.queue_size", "sampler.num_negatives"}
    assert all(train.group_key(c) == train.group_key(base) for c in varied)
    assert train.group_key(config("simclr_mnist1d", batch_size=64)) != train.group_key(base)
    hp = train.hparams(config("simclr_mnist1d", seed=3, **{"loss.temperature": 0.3}))
    assert isinstance(hp, train.HParams) and set(hp._fields) == {m.name for m in train.MEMBERS if m.name} | {"loss_kwargs"}
    assert hp.seed.dtype == np.int32 and hp.seed == 3 and hp.temperature == np.float32(0.3)


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


# ----------------------------------------------------------------------------- adding a task


TOY = """
import jax.numpy as jnp
import numpy as np

from experiments.tasks import common, views


def make_objective(setup):
    loss = views.make_objective(setup)
    read_config = setup.config.toy.read_config  # (not a member field: the test's switch)

    def objective(reps, lp, extra, hp):
        scale = setup.config.toy.scale if read_config else hp.scale  # the trap, and the right way
        a, b, neg = reps
        return loss((a * scale, b * scale, neg), lp, extra, hp) * scale

    return objective


TASK = common.register(common.Task(**{
    **{f.name: getattr(views.TASK, f.name) for f in __import__("dataclasses").fields(views.TASK)},
    "name": "toy", "make_objective": make_objective,
    # its own fields, with their defaults (and the views task's, whose functions it reuses and which read them)
    "config": {**views.CONFIG, "toy.scale": 1.0, "toy.read_config": False},
    "members": (common.MemberField("toy.scale", "scale"),),   # a swept field: members of one program
    "shape_key": views.shape_key}))
"""


@pytest.fixture
def toy_task(tmp_path, monkeypatch):
    """A task registered from a module of its own (``toy.scale`` swept), unregistered afterwards."""
    import importlib
    import sys

    (tmp_path / "toy_task.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_task")
    yield module
    tasks.common.TASKS._items.pop("toy", None)
    sys.modules.pop("toy_task", None)


@pytest.mark.slow
def test_a_task_is_its_module_and_its_swept_field_trains_as_members_of_one_program(tmp_path, toy_task):
    from experiments import sweep as S
    from tests.experiments.helpers import SMALL_SWEEP

    base = config("simclr_mnist1d", **dict(SMALL_SWEEP, steps=2, log_every=2, checkpoint_every=2, batch_size=8),
                  task="toy")
    assert base.toy.scale == 1.0 and "scale" in train.hparams_type()._fields
    summary = S.run(S.Sweep(base=base, grid={"toy.scale": (1.0, 2.0)}), str(tmp_path / "s"), progress=False,
                    baselines=False)
    assert summary["failed"] == {} and len(summary["finished"]) == 2
    results = [train.read_result(str(tmp_path / "s" / "runs" / n)) for n in sorted(summary["finished"])]
    assert results[0]["program"] == results[1]["program"]  # one program, two members
    assert results[0]["final_loss"] != results[1]["final_loss"]  # each trained at its own scale
    # another task's config leaves the toy's fields alone
    with pytest.raises(ValueError, match="config.toy.scale=3.0 belongs to task 'toy'"):  # (simclr is 'views')
        config_lib.validate(config("simclr_mnist1d", **{"toy.scale": 3.0}))


@pytest.mark.slow
def test_a_step_that_reads_a_member_field_from_the_config_fails_naming_hp(tmp_path, toy_task):
    from tests.experiments.helpers import SMALL_SWEEP

    members = [config("simclr_mnist1d", **dict(SMALL_SWEEP, steps=2, log_every=2, checkpoint_every=2, batch_size=8),
                      task="toy", **{"toy.scale": s, "toy.read_config": True}) for s in (1.0, 2.0)]
    with pytest.raises(TypeError, match=r"config.toy.scale is a member field: .* read hp.scale inside the step"):
        train.train_group(members, [str(tmp_path / "a"), str(tmp_path / "b")])
    guarded = train.step_config(members)
    assert bool(guarded.negatives.memory) is False and int(guarded.negatives.memory) == 0  # shapes: shared values
    with pytest.raises(TypeError, match="read hp.temperature"):
        float(guarded.loss.temperature)
