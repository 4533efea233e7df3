"""The command lines and config routes: every keyword argument reachable, one-line errors, --help, no stray dirs."""

import os
import subprocess
import sys

import pytest

from experiments import cli, config_lib
from experiments import sweep as S
from experiments import train as T
from tests.experiments.helpers import config, small_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_keyword_arguments_are_set_from_every_route():
    """--config.loss.kwargs.x, get_config's arg and sweep axes reach the loss, sampler, view and model kwargs."""
    c = config_lib.load_file("experiments/configs/simclr_mnist1d.py")
    rest, overrides = cli.split_overrides(
        ["prog", "--config.loss.name=debiased", "--config.loss.kwargs.tau_plus=0.1", "--workdir", "w",
         "--config.data.view_kwargs.noise", "0.2", "--config.model.kwargs.channels=(16, 32)"])
    assert rest == ["prog", "--workdir", "w"]
    cli.apply_overrides(c, overrides)
    assert (c.loss.name, c.loss.kwargs.tau_plus, c.data.view_kwargs.noise) == ("debiased", 0.1, 0.2)
    assert c.model.kwargs.channels == (16, 32)
    config_lib.validate(c)
    # get_config's argument, with a tuple value holding a comma
    c2 = config_lib.load_file("experiments/configs/simclr_mnist1d.py:loss.name=debiased,loss.kwargs.tau_plus=0.2,"
                              "model.kwargs.channels=(8, 16)")
    assert c2.loss.kwargs.tau_plus == 0.2 and c2.model.kwargs.channels == (8, 16)
    # a sweep axis over a keyword argument
    sw = small_sweep(grid={"loss.kwargs.tau_plus": (0.05, 0.1)}, zip={"batch_size": (8,), "steps": (2,)})
    sw.base.loss.name = "debiased"
    assert [p.config.loss.kwargs.tau_plus for p in S.expand(sw)] == [0.05, 0.1]
    # retrieval: sampler kwargs too
    r = config_lib.load_file("experiments/configs/retrieval_synthetic.py")
    cli.apply_overrides(r, [("sampler.kwargs.skip_top", "3")])
    assert r.sampler.kwargs.skip_top == 3
    config_lib.validate(r)


@pytest.mark.parametrize("field,value,match", [
    ("loss.kwargs.tau_plsu", "0.1", r"loss.kwargs: unknown argument\(s\) \['tau_plsu'\]; valid: .*tau_plus"),
    ("model.kwargs.chanels", "(8,)", r"model.kwargs: unknown argument\(s\) \['chanels'\]; valid: .*channels"),
    ("sampler.kwargs.skip_tops", "1", r"sampler.kwargs: unknown argument\(s\) \['skip_tops'\]"),
])
def test_a_misspelt_keyword_argument_names_the_valid_ones(field, value, match):
    c = config_lib.load_file("experiments/configs/retrieval_synthetic.py" if field.startswith("sampler")
                             else "experiments/configs/simclr_mnist1d.py:loss.name=debiased")
    cli.apply_overrides(c, [(field, value)])
    with pytest.raises(ValueError, match=match):
        config_lib.validate(c)


@pytest.mark.parametrize("field,value,match", [
    ("stpes", "40", r"^--config.stpes: unknown config field 'stpes'; did you mean 'steps'\?$"),
    ("loss.temprature", "0.1", r"did you mean 'loss.temperature'\?"),
    ("steps", "many", r"config field 'steps' is int \(600\); cannot set it to str 'many'"),
])
def test_bad_overrides_fail_with_one_clear_message(field, value, match):
    c = config_lib.load_file("experiments/configs/simclr_mnist1d.py")
    with pytest.raises(config_lib.ConfigError, match=match):
        cli.apply_overrides(c, [(field, value)])


@pytest.mark.slow
def test_the_readme_override_example_trains(tmp_path):
    """README: ``--config.loss.name=debiased --config.loss.kwargs.tau_plus=0.1`` (shrunk to 2 steps)."""
    out = _run("experiments.train", "--workdir", str(tmp_path / "r"), "--config.loss.name=debiased",
               "--config.loss.kwargs.tau_plus=0.1", "--config.steps=2", "--config.batch_size=32",
               "--config.data.config.num_samples=600", "--config.eval.max_examples=100",
               "--config.eval.probe_steps=5", "--config.progress=False")
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    cfg = json.load(open(tmp_path / "r" / "config.json"))
    assert cfg["loss"]["kwargs"] == {"tau_plus": 0.1} and cfg["loss"]["name"] == "debiased"
    assert "step 2/2" in out.stderr and "finished:" in out.stderr  # progress on stderr; stdout is the result JSON
    assert json.loads(out.stdout)["knn_accuracy"] > 0


@pytest.mark.slow
def test_command_line_errors_are_one_line_and_leave_no_directory(tmp_path):
    w = tmp_path / "w"
    out = _run("experiments.train", "--workdir", str(w), "--config.stpes=40")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: --config.stpes: unknown config field 'stpes'; did you mean 'steps'?"
    out = _run("experiments.train", "--workdir", str(w), "--config.loss.name=infonc")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "valid names" in out.stderr
    out = _run("experiments.train", "--baselines=0", "--config.loss.name=infonc")  # (no workdir needed)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "valid names" in out.stderr
    assert not w.exists()  # validation failed before the work directory was created
    out = _run("experiments.train", "--workdir", str(w), "--config", "experiments/configs/quickstart.py")
    assert out.returncode == 2 and "this is a sweep config" in out.stderr and "python -m experiments.sweep" in out.stderr
    out = _run("experiments.sweep", "--workdir", str(w), "--config", "experiments/configs/simclr_mnist1d.py")
    assert out.returncode == 2 and "is a run config, not a sweep" in out.stderr
    out = _run("experiments.sweep", "--config", "experiments/configs/quickstart.py:temperatures=0.1--0.5", "--dry_run")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "temperatures='0.1--0.5' must be float values separated by '-'" in out.stderr
    assert not w.exists()


def test_help_lists_each_commands_own_flags():
    out = _run("experiments.sweep", "--help")
    for flag in ("--workdir", "--workers", "--backend", "--[no]extend", "--[no]dry_run", "--config.<field>"):
        assert flag in out.stdout, flag
    out = _run("experiments.train", "--help")
    for flag in ("--workdir", "--config.<field>=<value>", "loss.kwargs.tau_plus"):
        assert flag in out.stdout, flag


def test_a_failed_validation_creates_nothing(tmp_path):
    c = config("simclr_mnist1d", **{"loss.name": "ntxent"})
    config_lib.set_field(c, "loss.kwargs.margin", 0.1)
    with pytest.raises(config_lib.ConfigError, match="unknown argument"):
        T.train(c, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_quickstart_arguments_name_the_bad_option():
    from experiments.configs import quickstart

    for arg, match in (("temperatures=0.1--0.5", "temperatures='0.1--0.5' must be float values"),
                       ("batches=16-x", "batches='16-x' must be int values"), ("seeds=two", "seeds='two'"),
                       ("batches", "'batches' must look like key=value")):
        with pytest.raises(ValueError, match=match):
            quickstart.get_config(arg)
    assert quickstart.get_config("temperatures=1e-2-0.1").grid["loss.temperature"] == (0.01, 0.1)


def test_quickstart_checkpoints_often_enough_to_resume():
    """An interrupted quickstart run resumes from a checkpoint, not from step 0."""
    from experiments.configs import quickstart

    for platform in ("cpu", "accelerator"):
        base = quickstart.get_config(f"platform={platform}").base
        assert base.steps // base.checkpoint_every >= 3  # at least two checkpoints before the last step


def test_the_command_lines_turn_on_the_persistent_compilation_cache(tmp_path):
    code = ("import jax; from experiments import train; d = train.enable_compilation_cache(); "
            "print(d, jax.config.jax_compilation_cache_dir)")
    env = dict(os.environ, JAXNEG_COMPILATION_CACHE=str(tmp_path / "xla"))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # (the test session's own cache, tests/conftest.py)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.stdout.split() == [str(tmp_path / "xla")] * 2, out.stderr
    env["JAXNEG_COMPILATION_CACHE"] = "0"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.stdout.split()[0] == "None", out.stderr
