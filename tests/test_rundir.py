"""jaxneg.rundir: the run-directory files that experiments.train, experiments.sweep and jaxneg.results share."""

import json
import os

import numpy as np
import pytest

from jaxneg import rundir


def test_json_is_written_atomically_with_numpy_values(tmp_path):
    path = str(tmp_path / "x.json")
    rundir.write_json(path, {"a": np.float32(0.5), "b": np.arange(3), "c": {"d": np.int64(7)}})
    assert rundir.read_json(path) == {"a": 0.5, "b": [0, 1, 2], "c": {"d": 7}}
    assert os.listdir(tmp_path) == ["x.json"]  # no temporary file left


def test_flat_and_config_diff():
    old = {"loss": {"name": "ntxent", "kwargs": {}}, "model": {"kwargs": {"channels": [8, 16]}}, "steps": 4}
    new = {"loss": {"name": "debiased", "kwargs": {"tau_plus": 0.1}}, "model": {"kwargs": {"channels": [8, 16]}},
           "steps": 4}
    assert rundir.flat(old) == {"loss.name": "ntxent", "loss.kwargs": "{}", "model.kwargs.channels": (8, 16),
                                "steps": 4}
    assert rundir.config_diff(old, new) == ["loss.kwargs", "loss.kwargs.tau_plus", "loss.name"]
    assert rundir.config_diff(old, old) == []


def test_status_logged_steps_and_truncation(tmp_path):
    run = str(tmp_path)
    assert rundir.status(run) == "running" and rundir.logged_step(run) == 0 and rundir.last_loss(run) is None
    rows = [{"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.5}, {"step": 4, "eval/knn": 0.3}, {"step": 6, "loss": 2.0}]
    with open(tmp_path / rundir.METRICS, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.write('{"step": 8, "lo')  # torn by a kill
    assert rundir.logged_step(run) == 6 and rundir.last_loss(run) == 2.0
    rundir.truncate_metrics(run, 4)  # resumed from the step-4 checkpoint
    assert [json.loads(line) for line in open(tmp_path / rundir.METRICS)] == rows[:3]
    (tmp_path / rundir.ERROR).write_text("boom")
    assert rundir.status(run) == "failed"
    rundir.write_json(str(tmp_path / rundir.RESULT), {"status": "finished"})
    assert rundir.status(run) == "finished"
    os.makedirs(tmp_path / "checkpoints" / "2")
    os.makedirs(tmp_path / "checkpoints" / "4")
    os.makedirs(tmp_path / "checkpoints" / "quarantine")
    assert rundir.checkpointed_step(run) == 4


def test_find_runs(tmp_path):
    for name in ("b", "a", "a/nested"):
        os.makedirs(tmp_path / name, exist_ok=True)
    (tmp_path / "a" / rundir.CONFIG).write_text("{}")
    (tmp_path / "b" / rundir.CONFIG).write_text("{}")
    (tmp_path / "a" / "nested" / rundir.CONFIG).write_text("{}")  # inside a run: not another run
    assert rundir.find_runs(str(tmp_path)) == [str(tmp_path / "a"), str(tmp_path / "b")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rundir.find_runs(str(tmp_path / "nope"))
