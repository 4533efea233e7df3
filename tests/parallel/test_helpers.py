"""jaxneg.parallel on one process: initialize is a no-op, the mesh and the sharded batch."""

import jax
import numpy as np
import pytest

from jaxneg import parallel


def test_initialize_is_a_noop_for_one_process(monkeypatch):
    for var in ("JAXNEG_NUM_PROCESSES", "JAX_NUM_PROCESSES", "JAXNEG_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize() is False
    assert parallel.initialize(num_processes=1) is False


def test_initialize_validates_before_starting_anything(monkeypatch):
    monkeypatch.setenv("JAXNEG_NUM_PROCESSES", "2")
    monkeypatch.delenv("JAXNEG_COORDINATOR_ADDRESS", raising=False)
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="needs coordinator_address"):
        parallel.initialize(process_id=0)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        parallel.initialize("127.0.0.1:1", process_id=2)
    with pytest.raises(ValueError, match="must be integers"):
        parallel.initialize("127.0.0.1:1", num_processes="two", process_id=0)


def test_data_mesh_and_shard_batch():
    mesh = parallel.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.devices.size == len(jax.devices())
    n = mesh.devices.size
    x, y = np.arange(2 * n * 3, dtype=np.float32).reshape(2 * n, 3), np.arange(2 * n)
    gx, gy = parallel.shard_batch((x, y), mesh)
    np.testing.assert_array_equal(gx, x)
    assert len(gx.addressable_shards) == n and gx.addressable_shards[0].data.shape == (2, 3)
    with pytest.raises(ValueError, match=f"divisible by the {n} local devices"):
        parallel.shard_batch(np.ones((n + 1, 2)), mesh)
    with pytest.raises(ValueError, match="mesh has no axis 'model'"):
        parallel.shard_batch(x, mesh, "model")
