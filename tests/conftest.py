import os

import hypothesis
import jax

# Multi-device code is tested on CPU with 8 host devices (set before JAX's first use).
jax.config.update("jax_num_cpu_devices", 8)

hypothesis.settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
hypothesis.settings.register_profile("dev", max_examples=100, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
    """Prepared tfds files go to a per-worker temporary directory (never ~/tensorflow_datasets)."""
    path = str(tmp_path_factory.mktemp("tfds"))
    old = os.environ.get("JAXNEG_DATA_DIR")
    os.environ["JAXNEG_DATA_DIR"] = path
    # the command lines' persistent compilation cache: per worker, not the user's ~/.cache
    os.environ.setdefault("JAXNEG_COMPILATION_CACHE", str(tmp_path_factory.mktemp("xla")))
    yield path
    if old is None:
        os.environ.pop("JAXNEG_DATA_DIR", None)
    else:
        os.environ["JAXNEG_DATA_DIR"] = old


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """A small finished sweep (tests.experiments.helpers.small_sweep): ``(directory, summary)``.

    Trained once per test session: xdist workers share it through their common base
    directory, the first one to arrive trains it under a file lock, the others wait for it.
    """
    import fcntl
    import json

    from experiments import sweep
    from tests.experiments.helpers import small_sweep

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this session's directory
    d = root / "shared_sweep"
    with open(root / "shared_sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (d / "first_summary.json").exists():
                summary = sweep.run(small_sweep(), str(d), progress=False)
                (d / "first_summary.json").write_text(json.dumps(summary))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return str(d), json.loads((d / "first_summary.json").read_text())
