"""The task registry: each task is one record, config validation reads its rules, train never names a task."""

import dataclasses
import inspect

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
