import os

import hypothesis
import jax

# Multi-device code is tested on CPU with 8 host devices (set before JAX's first use).
jax.config.update("jax_num_cpu_devices", 8)

hypothesis.settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
hypothesis.settings.register_profile("dev", max_examples=100, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
