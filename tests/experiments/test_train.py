"""experiments.train: validation before compute, every config family, gradcache, outputs."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import train as T
from experiments.tasks import views
from jaxneg import data as jaxneg_data
from tests.experiments.helpers import DEFAULT, config, final_params, leaves, patch_task

MNIST = {"num_samples": 1000}
RETRIEVAL = {"num_docs": 512, "num_train_queries": 1024, "num_test_queries": 128}


@pytest.mark.parametrize("field,value,match", [
    ("loss.name", "infonc", "valid names: additive_margin, bpr"),
    ("loss.name", "margin_mse", "not valid here: it needs teacher inputs.*valid values: 'additive_margin'"),
    ("sampler.name", "hardtopk", "belongs to task .pairs."),
    ("data.name", "mnist_1d", "mnist1d, sklearn_digits, synthetic_retrieval"),
    ("data.view", "sigmal", "'image', 'signal'"),
    ("model.name", "cnn2d", "'bag_of_tokens', 'cnn1d'"),
    ("batch_size", 30, "divisible by the 8 devices"),
    ("optimizer.name", "adagrad", "'adam', 'adamw', 'sgd', 'lars'"),
    ("gradcache_chunk", 3, "must divide the per-device batch 4"),
    ("loss.name", "sampled_softmax", "needs sampled negatives"),
])
def test_bad_configs_fail_before_any_compute(tmp_path, monkeypatch, field, value, match):
    monkeypatch.setattr(jaxneg_data, "load", lambda *a, **k: pytest.fail("data was loaded before validation"))
    c = config("simclr_mnist1d", num_devices=8, **{field: value})
    with pytest.raises(ValueError, match=match):
        T.train(c, str(tmp_path))
    assert not os.path.exists(tmp_path / "config.json")


def test_unknown_fields_and_the_config_argument_are_checked(tmp_path):
    c = config("simclr_mnist1d")
    c.loss.temprature = 0.2
    with pytest.raises(ValueError, match=r"loss.temprature \(valid: bias, gather"):
        T.train(c, str(tmp_path))
    with pytest.raises(ValueError, match="unknown config field 'stepz'; did you mean 'steps'"):
        config("simclr_mnist1d", "stepz=3")
    assert config("simclr_mnist1d", "loss.temperature=0.3,steps=7", steps=7).loss.temperature == 0.3


#: a config family that must also learn: 100 steps at the config's own data and batch, evaluated at init too
LEARNS = {"steps": 100, "batch_size": DEFAULT, "log_every": 50, "checkpoint_every": 50, "eval.at_init": True,
          "eval.max_examples": 1024}
CASES = {
    "ntxent_8_devices": ("simclr_mnist1d", {"data.config": MNIST, "num_devices": 8}),
    "supcon_supervised": ("simclr_mnist1d", {"data.config": MNIST, "loss.name": "supcon", "loss.supervised": True}),
    "triplet": ("simclr_mnist1d", {"data.config": MNIST, "loss.name": "triplet"}),
    "siglip_learned_ring": ("simclr_mnist1d", {"data.config": MNIST, "loss.name": "siglip",
                                               "loss.learn_temperature": True, "loss.gather": "ring",
                                               "num_devices": 4}),
    "digits_resnet": ("simclr_mnist1d", {"data.name": "sklearn_digits", "data.config": {}, "data.view": "image",
                                         "data.view_kwargs": {},
                                         "model.name": "resnet", "model.kwargs": {"stage_sizes": (1,), "width": 8}}),
    # the two retrieval configs at their defaults (data, batch, model, sampler) on a fifth of their schedule
    "clip_pairs": ("clip_pairs", {**LEARNS}),
    "retrieval_hard_topk": ("retrieval_synthetic", {**LEARNS, "num_devices": 2}),
    "retrieval_simans": ("retrieval_synthetic", {"data.config": RETRIEVAL, "sampler.name": "simans",
                                                 "sampler.candidates": 16, "sampler.kwargs": {}}),
    "recsys": ("recsys_sampled_softmax", {"data.config": {**RETRIEVAL, "popularity_exponent": 1.0},
                                          "sampler.num_negatives": 64}),
    "bpr_uniform": ("recsys_sampled_softmax", {"data.config": RETRIEVAL, "loss.name": "bpr", "sampler.name": "uniform",
                                               "sampler.num_negatives": 4, "sampler.kwargs": {}}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.slow
def test_each_config_family_trains_and_writes_its_outputs(tmp_path, case):
    """Every family trains 4 steps and writes its outputs; the two retrieval configs train 100 steps of their
    defaults and must beat their untrained encoder's MRR@100 by 0.15 (measured: clip_pairs 0.001 -> 0.22,
    retrieval_synthetic 0.17 -> 0.56; with the corpus out of doc_id order, as tfds stored it, they stayed
    at 0.001 and 0.19 after 500 steps)."""
    name, overrides = CASES[case]
    c = config(name, **overrides)
    result = T.train(c, str(tmp_path))
    assert result["status"] == "finished" and result["num_devices"] == c.num_devices
    assert result["eval"] and all(np.isfinite(v) for v in result["eval"].values())
    if name.startswith("simclr"):
        assert {"knn_accuracy", "linear_probe_accuracy", "alignment", "uniformity", "rankme",
                "contrastive_accuracy"} <= set(result["eval"])
    else:
        assert {"recall@1", "recall@10", "mrr@100", "ndcg@10", "contrastive_accuracy"} <= set(result["eval"])
    if overrides.get("steps") == LEARNS["steps"]:
        assert result["eval"]["mrr@100"] > result["init_eval"]["mrr@100"] + 0.15, (result["init_eval"], result["eval"])
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    every = lambda n: list(range(n, c.steps + 1, n))  # noqa: E731
    assert [r["step"] for r in rows if "loss" in r] == every(c.log_every)
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert json.load(open(tmp_path / "config.json"))["loss"]["name"] == c.loss.name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
    assert sorted(os.listdir(tmp_path / "checkpoints"), key=int) == [str(s) for s in every(c.checkpoint_every)]
    assert json.load(open(tmp_path / "result.json")) == json.loads(json.dumps(result))
    # starting again returns the finished result without training
    assert T.train(config(name, **overrides), str(tmp_path))["wall_seconds"] == result["wall_seconds"]


def test_a_workdir_refuses_a_different_config(tmp_path):
    T.train(config("simclr_mnist1d", **{"data.config": MNIST, "steps": 2}), str(tmp_path))
    with pytest.raises(ValueError, match=r"different config \(fields \['loss.temperature'\]\)"):
        T.train(config("simclr_mnist1d", **{"data.config": MNIST, "steps": 2, "loss.temperature": 0.3}), str(tmp_path))


@pytest.mark.parametrize("learn, over", [(True, {"negatives.memory": 32})], ids=["learned_temperature_memory_bank"])
@pytest.mark.slow
def test_gradient_caching_gives_the_plain_parameters(tmp_path, learn, over):
    """The batch centre is exact under gradient caching (it is taken over the whole batch's embeddings, in the
    loss), and the memory bank receives the same embeddings (the cached step returns them). (The running
    centre is a constant within a step; fixed temperatures alone: tests/test_gradcache.py.)"""
    common = {"data.config": MNIST, "steps": 3, "loss.learn_temperature": learn, "eval.max_examples": 16,
              "num_devices": 4, **over}
    c = config("simclr_mnist1d", **common)
    T.train(c, str(tmp_path / "plain"))
    T.train(config("simclr_mnist1d", **common, gradcache_chunk=2), str(tmp_path / "cached"))
    _, a = final_params(str(tmp_path / "plain"))
    _, b = final_params(str(tmp_path / "cached"))
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)
    if learn:
        assert float(a["logit"]["log_scale"]) != pytest.approx(-np.log(0.1), abs=1e-6)  # the temperature learned


def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = views.host_batch

    def poisoned(setup, seed, step):
        b = real(setup, seed, step)
        if step >= 5:
            b["x"] = np.full_like(b["x"], np.nan)
        return b

    patch_task(monkeypatch, "views", host_batch=poisoned)
    with pytest.raises(T.NonFiniteLoss, match="at step 5; stopped. Last good checkpoint: step 4") as e:
        T.train(config("simclr_mnist1d", **{"data.config": MNIST, "steps": 10}), str(tmp_path))
    assert e.value.step == 5
    failed = json.load(open(tmp_path / "failed.json"))
    assert failed["step"] == 5 and failed["last_checkpoint"] == 4
    step, params = final_params(str(tmp_path))
    assert step == 4 and all(np.all(np.isfinite(x)) for x in leaves(params))
    assert not os.path.exists(tmp_path / "result.json")


# (debiased_stl10 without beta differs from the beta run only in the loss, tested in tests/losses)
# (uniformity_cifar is simclr_cifar10's pipeline and loss at another temperature, on cifar10 or cifar100: its
# arguments are checked in test_paper_config_arguments_are_validated)
PAPER = [("simclr_cifar10", "batch=256", "cifar10"), ("debiased_stl10", "tau_plus=0.1,beta=1.0", "stl10")]


@pytest.mark.parametrize("name,arg,dataset", PAPER, ids=[f"{p[0]}:{p[1]}" for p in PAPER])
@pytest.mark.slow
def test_paper_configs_run_two_steps_on_mock_data(tmp_path, name, arg, dataset):
    """Each paper config's own data pipeline (the dataset's real image shape, its augmentations and
    splits), loss and ResNet-18 topology, at the smallest shapes: width 8 instead of 64 halves the
    compile and step time and changes no code path."""
    paper = config(name, arg)
    assert paper.data.name == dataset and paper.model.name == "resnet"
    assert paper.model.kwargs["stage_sizes"] == (2, 2, 2, 2)  # the ResNet-18 of the papers
    c = config(name, arg, steps=2, batch_size=16, **{"eval.max_examples": 32, "eval.num_candidates": 4,
                                                     "model.kwargs": {**paper.model.kwargs, "width": 8},
                                                     "model.head_hidden": (16,)})
    with tfds.testing.mock_data(num_examples=48):
        result = T.train(c, str(tmp_path))
    assert result["status"] == "finished" and np.isfinite(result["final_loss"])
    assert 0.0 <= result["eval"]["knn_accuracy"] <= 1.0


def test_paper_config_arguments_are_validated():
    with pytest.raises(ValueError, match=r"batch must be in \(256, 512"):
        config("simclr_cifar10", "batch=300")
    with pytest.raises(ValueError, match="cifar10 or cifar100"):
        config("uniformity_cifar", "dataset=svhn")


@pytest.mark.slow
def test_gradient_accumulation_updates_once_every_k_steps(tmp_path):
    import jax

    c = config("simclr_mnist1d", **{"data.config": MNIST, "steps": 4, "checkpoint_every": 1, "keep_checkpoints": 5,
                                    "optimizer.accumulate": 2, "optimizer.warmup_steps": 0})
    T.train(c, str(tmp_path))
    import orbax.checkpoint as ocp
    ck = lambda s: leaves(ocp.StandardCheckpointer().restore(str(tmp_path / "checkpoints" / str(s) / "default"))["params"])
    init = leaves(T.init_params(T.build(c), jax.random.key(c.seed)))
    assert all(np.array_equal(a, b) for a, b in zip(ck(1), init))          # step 1 only accumulates
    assert not all(np.array_equal(a, b) for a, b in zip(ck(2), init))      # step 2 applies the mean
    assert all(np.array_equal(a, b) for a, b in zip(ck(3), ck(2)))
    with pytest.raises(ValueError, match="accumulate=3 must divide config.steps=4"):
        T.train(config("simclr_mnist1d", **{"optimizer.accumulate": 3}), str(tmp_path / "bad"))


@pytest.mark.parametrize("name", ["simclr_mnist1d", "retrieval_synthetic"])
def test_evaluate_compiles_once(name):
    """A second evaluation (eval_every, the final one) reuses every compiled function."""
    import logging

    overrides = {"data.config": MNIST if name == "simclr_mnist1d" else RETRIEVAL}
    setup = T.build(config(name, **overrides))
    params = T.init_params(setup, jax.random.key(0))
    first = T.evaluate(setup, params)
    messages = []

    class Grab(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler, logger = Grab(), logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            again = T.evaluate(setup, params)
    finally:
        logger.removeHandler(handler)
    assert not [m for m in messages if m.startswith("Compiling")], messages[:5]
    assert again == first


def test_the_baselines_protocol_holds_every_field_the_evaluation_reads():
    """Every field of the data, model and evaluation groups changes the protocol key (the hand list missed
    data.eval_train_split, data.max_train_examples, model.head_hidden, data.view_kwargs and
    eval.num_candidates); fields only training reads do not."""
    from experiments.config_lib import get_field, set_field

    c = config("simclr_mnist1d")
    key = T.protocol(c)
    for field in ("data.eval_train_split", "data.max_train_examples", "model.head_hidden", "data.view_kwargs.noise",
                  "eval.num_candidates", "model.centre", "eval.ks", "task"):
        assert field in key, field
    for field in key:
        value = get_field(c, field)
        new = (not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float))
               else value + "x" if isinstance(value, str) else tuple(value) + (1,) if isinstance(value, (list, tuple))
               else None)
        if new is None:
            continue
        changed = config("simclr_mnist1d")
        with changed.unlocked():
            set_field(changed, field, new)
        assert T.protocol(changed) != key, field
        assert get_field(changed, field) != get_field(c, field)
    for field, value in (("steps", 9), ("optimizer.learning_rate", 0.5), ("loss.temperature", 0.3), ("seed", 4),
                         ("eval.at_init", False), ("model.centre_momentum", 0.5), ("negatives.memory", 64),
                         ("model.norm_splits", 2)):
        changed = config("simclr_mnist1d")
        set_field(changed, field, value)
        assert T.protocol(changed) == key, field
