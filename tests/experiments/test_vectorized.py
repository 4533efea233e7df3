"""Vectorised members: one program, each member equal to the same point run alone."""

import json
import os
import shutil

import numpy as np
import pytest

from experiments import sweep as S
from experiments import train as T
from experiments.tasks import views
from tests.experiments.helpers import SMALL_SWEEP, config, final_params, leaves, patch_task

TINY = dict(SMALL_SWEEP, steps=5, checkpoint_every=5, log_every=5, batch_size=16)


def _close(a, b, tol=1e-5):
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


@pytest.mark.parametrize("devices", [1, 4])
@pytest.mark.slow
def test_a_member_equals_the_same_point_run_alone(tmp_path, devices):
    members = [config("simclr_mnist1d", **TINY, num_devices=devices, **over) for over in (
        {"seed": 0, "loss.temperature": 0.1},
        {"seed": 1, "loss.temperature": 0.5, "optimizer.learning_rate": 3e-3},
        {"seed": 2, "loss.temperature": 0.2, "optimizer.weight_decay": 0.05})]
    assert len({T.group_key(c) for c in members}) == 1
    dirs = [str(tmp_path / f"m{i}") for i in range(3)]
    results = T.train_group(members, dirs, members_per_step=3)  # one vmapped step (the accelerator default)
    assert [r["status"] for r in results] == ["finished"] * 3 and results[0]["members"] == 3, results
    for i in (1,):  # (one alone run per mesh keeps CI short; member 2 differs in weight decay too)
        alone = T.train(members[i], str(tmp_path / f"alone{i}"))
        assert alone["members"] == 1
        _close(final_params(dirs[i])[1], final_params(str(tmp_path / f"alone{i}"))[1])
        assert alone["final_loss"] == pytest.approx(results[i]["final_loss"], rel=1e-5)
        assert alone["eval"]["knn_accuracy"] == pytest.approx(results[i]["eval"]["knn_accuracy"], abs=1e-6)
    # different seeds and hyperparameters really trained differently
    assert not np.allclose(leaves(final_params(dirs[0])[1])[0], leaves(final_params(dirs[1])[1])[0])
    if devices == 1:  # the CPU default: the members pass one at a time through one compiled step
        dirs = [str(tmp_path / f"s{i}") for i in range(3)]
        seq = T.train_group(members, dirs)
        assert [r["members"] for r in seq] == [1, 1, 1] and len({r["program"] for r in seq}) == 1 and \
            len({r["pass"] for r in seq}) == 3
        assert seq[0]["time_account"]["compile"] > 0 and seq[1]["time_account"]["compile"] == 0 == \
            seq[2]["time_account"]["compile"]  # compiled once
        _close(final_params(dirs[1])[1], final_params(str(tmp_path / "alone1"))[1], tol=0)  # bit-identical
        assert seq[1]["eval"] == alone["eval"]
        with pytest.raises(T.config_lib.ConfigError, match="members_per_step must be an int >= 0"):
            T.train_group(members, dirs, members_per_step=-1)


@pytest.mark.slow
def test_swept_loss_keywords_are_traced_and_a_failing_member_stops_alone(tmp_path, monkeypatch):
    base = dict(TINY, **{"loss.name": "debiased"})
    members = [config("simclr_mnist1d", **base, **{"loss.kwargs.tau_plus": t, "seed": s})
               for t, s in ((0.0, 0), (0.1, 0), (0.1, 1))]
    assert T.traced_loss_kwargs(members) == ("tau_plus",)
    real = views.host_batch

    def poisoned(setup, seed, step):  # seed 1's data turns to NaN at step 3
        b = real(setup, seed, step)
        if seed == 1 and step >= 3:
            b["x"] = np.full_like(b["x"], np.nan)
        return b

    with monkeypatch.context() as patched:
        patch_task(patched, "views", host_batch=poisoned)
        dirs = [str(tmp_path / f"m{i}") for i in range(3)]
        results = T.train_group(members, dirs, members_per_step=3)
    assert [r["status"] for r in results] == ["finished", "finished", "failed"]
    assert results[2]["step"] == 3 and json.load(open(os.path.join(dirs[2], "failed.json")))["step"] == 3
    alone = T.train(members[1], str(tmp_path / "alone"))
    _close(final_params(dirs[1])[1], final_params(str(tmp_path / "alone"))[1])
    assert alone["final_loss"] == pytest.approx(results[1]["final_loss"], rel=1e-5)


def _moco(**over):
    return config("simclr_mnist1d", **dict(TINY, steps=4, checkpoint_every=2, log_every=2, num_devices=2),
                  **{"loss.name": "infonce", "moco.enabled": True, "moco.queue_size": 40, "loss.temperature": 0.2,
                     **over})


@pytest.mark.slow
def test_moco_queues_resume_exactly_and_share_a_program(tmp_path):
    c = _moco()
    straight = T.train(c, str(tmp_path / "straight"))
    _, state_params = final_params(str(tmp_path / "straight"))
    d = str(tmp_path / "resumed")
    shutil.copytree(tmp_path / "straight", d)  # the same run, rolled back to its step-2 checkpoint
    os.remove(os.path.join(d, "result.json"))
    shutil.rmtree(os.path.join(d, "checkpoints", "4"))
    os.remove(os.path.join(d, "manifests", "4.json"))
    resumed = T.train(c, d)
    assert resumed["resumed_from"] == 2 and resumed["final_loss"] == straight["final_loss"]
    _close(final_params(d)[1], state_params, tol=0)
    import orbax.checkpoint as ocp

    state = ocp.StandardCheckpointer().restore(os.path.join(d, "checkpoints", "4", "default"))
    assert int(state["queue"]["count"]) == 40 and int(state["queue"]["ptr"]) == (4 * 16) % 40
    assert set(state) >= {"key_params", "queue", "params"}

    # queues of 16 and 40 keys share one program (the shorter padded and masked), each member equal
    # to its run alone; their checkpoints hold their own queue length
    members = [_moco(seed=1, **{"moco.queue_size": 16}), _moco()]
    assert T.group_key(members[0]) == T.group_key(members[1])
    assert T.group_key(_moco(**{"moco.queue_size": 0})) != T.group_key(members[0])
    dirs = [str(tmp_path / "q16"), str(tmp_path / "q40")]
    results = T.train_group(members, dirs, members_per_step=2)
    alone = [T.train(members[0], str(tmp_path / "q16_alone")), straight]
    for c, member_dir, alone_dir, r, a in zip(members, dirs, [str(tmp_path / "q16_alone"), str(tmp_path / "straight")],
                                              results, alone):
        _close(final_params(member_dir)[1], final_params(alone_dir)[1])
        assert a["final_loss"] == pytest.approx(r["final_loss"], rel=1e-5)
        state = ocp.StandardCheckpointer().restore(os.path.join(member_dir, "checkpoints", "4", "default"))
        assert state["queue"]["keys"].shape[0] == c.moco.queue_size
    with pytest.raises(ValueError, match=r"queue_size=8 must be 0 or >= 16 \(each step pushes the batch's keys\)"):
        T.config_lib.validate(_moco(**{"moco.queue_size": 8}))


def test_moco_configs_are_checked():
    c = T.config_lib.validate(config("moco_mnist1d", steps=300, batch_size=128))  # the queue fills in its first steps
    assert c.moco.enabled and c.moco.queue_size // c.batch_size <= c.steps // 10
    with pytest.raises(ValueError, match="needs config.moco.enabled=True"):
        T.config_lib.validate(config("simclr_mnist1d", **{"moco.queue_size": 8}))
    with pytest.raises(ValueError, match="takes no extra negatives|takes extra negatives"):
        T.config_lib.validate(config("simclr_mnist1d", **{"moco.enabled": True, "moco.queue_size": 64,
                                                          "loss.name": "decoupled"}))


def test_the_sweep_plans_one_program_per_shape():
    sw = S.Sweep(base=config("simclr_mnist1d", **TINY),
                 grid={"loss.temperature": (0.1, 0.5), "seed": (0, 1, 2), "batch_size": (8, 16)})
    points = S.expand(sw)
    groups = S.plan(points)
    assert sorted(len(g) for g in groups) == [6, 6]
    assert {p.config.batch_size for g in groups for p in g[:1]} == {8, 16}
    assert len(S.plan(points, vectorize=False)) == 12
    assert sorted(len(g) for g in S.plan(points, max_members=4)) == [2, 2, 4, 4]
