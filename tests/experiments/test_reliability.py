"""Reliability: SIGKILL mid-run and resume bit-identically; corrupt checkpoints; the CLI default config."""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.checkpoints import Checkpoints
from tests.experiments.helpers import final_params, leaves

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--config.data.config.num_samples=1000", "--config.steps=30", "--config.checkpoint_every=5",
         "--config.log_every=5", "--config.batch_size=64", "--config.eval.max_examples=100",
         "--config.eval.probe_steps=10", "--config.progress=False", "--config.model.kwargs.channels=(16, 32)"]


def _cli(workdir, *extra):
    return [sys.executable, "-m", "experiments.train", "--config", "experiments/configs/simclr_mnist1d.py",
            "--workdir", str(workdir), *SMALL, *extra]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    return env


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path):
    subprocess.run(_cli(tmp_path / "straight"), cwd=ROOT, env=_env(), check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "manifests" / "15.json").exists():  # killed after the step-15 checkpoint
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists()
    out = subprocess.run(_cli(killed), cwd=ROOT, env=_env(), check=True, capture_output=True, text=True)
    result = json.load(open(killed / "result.json"))
    assert result["resumed_from"] >= 15
    step_a, a = final_params(str(tmp_path / "straight"))
    step_b, b = final_params(str(killed))
    assert step_a == step_b == 30
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)  # bit-identical, not merely close
    losses = lambda d: [(r["step"], r["loss"]) for r in map(json.loads, open(d / "metrics.jsonl")) if "loss" in r]
    assert losses(tmp_path / "straight") == losses(killed)  # the log was rewound to the checkpoint, no duplicates
    assert json.loads(out.stdout)["knn_accuracy"] == json.load(open(tmp_path / "straight" / "result.json"))["eval"][
        "knn_accuracy"]


def test_a_corrupt_or_torn_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    state = {"w": jnp.arange(6.0), "b": jnp.ones(3)}
    ck = Checkpoints(str(tmp_path / "checkpoints"), keep=3)
    for step in (10, 20, 30):
        ck.save(step, {"w": state["w"] + step, "b": state["b"]})
    ck.close()
    # truncate the largest file of step 30
    files = [os.path.join(b, f) for b, _, fs in os.walk(tmp_path / "checkpoints" / "30") for f in fs]
    victim = max(files, key=os.path.getsize)
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    ck = Checkpoints(str(tmp_path / "checkpoints"), keep=3)
    step, got = ck.restore(state)
    assert step == 20 and np.array_equal(got["w"], np.arange(6.0) + 20)
    assert ck.steps() == [10, 20]  # the bad step is gone, so it can be saved again
    ck.save(30, {"w": state["w"] + 31, "b": state["b"]})
    # a step without its manifest (killed between orbax' rename and the manifest) is skipped too
    os.remove(tmp_path / "manifests" / "30.json")
    step, _ = Checkpoints(str(tmp_path / "checkpoints"), keep=3).restore(state)
    assert step == 20


@pytest.mark.slow
def test_the_default_config_learns_in_about_a_minute(tmp_path):
    """The README's default: SimCLR on MNIST-1D; kNN accuracy well above the random-init encoder."""
    subprocess.run([sys.executable, "-m", "experiments.train", "--workdir", str(tmp_path), "--config.progress=False"],
                   cwd=ROOT, env=_env(), check=True, capture_output=True)
    r = json.load(open(tmp_path / "result.json"))
    assert r["eval"]["knn_accuracy"] > r["init_eval"]["knn_accuracy"] + 0.2
    assert r["eval"]["linear_probe_accuracy"] > r["init_eval"]["linear_probe_accuracy"] + 0.2
