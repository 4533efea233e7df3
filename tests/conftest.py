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
    yield path
    if old is None:
        os.environ.pop("JAXNEG_DATA_DIR", None)
    else:
        os.environ["JAXNEG_DATA_DIR"] = old
