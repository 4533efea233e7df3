"""Data-parallel helpers: the device mesh, sharding a batch, and multi-host start-up.

The losses take ``axis_name=`` inside ``jax.shard_map``; these helpers build the mesh
and the globally sharded arrays around them::

    from jax.sharding import PartitionSpec as P
    from jaxneg import losses, parallel

    parallel.initialize()                          # no-op for one process
    mesh = parallel.data_mesh()                    # every device of every process, axis "data"
    q, k = parallel.shard_batch((q_local, k_local), mesh)   # [B_process, D] -> global [B, D]

    @jax.jit
    def step(q, k):
        return jax.shard_map(
            lambda q, k: losses.infonce(q, k, symmetric=True, axis_name="data", gather="ring"),
            mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())(q, k)
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA = "data"

_ENV = {
    "coordinator_address": ("JAXNEG_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("JAXNEG_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("JAXNEG_PROCESS_ID", "JAX_PROCESS_ID"),
}


def _from_env(name):
    for var in _ENV[name]:
        if os.environ.get(var):
            return os.environ[var]
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_collectives: str = "gloo") -> bool:
    """Start multi-host JAX (``jax.distributed.initialize``) when there is more than one process.

    Each argument left ``None`` is read from the environment (``JAXNEG_COORDINATOR_ADDRESS``,
    ``JAXNEG_NUM_PROCESSES``, ``JAXNEG_PROCESS_ID``, or the same names with a ``JAX_``
    prefix). With one process (or none configured) nothing happens and ``False`` is
    returned, so single-host scripts can always call it. On CPU the cross-process
    collectives use ``cpu_collectives`` (``"gloo"``). Call it before any other JAX use.

    Returns:
      ``True`` if the distributed runtime was started.
    """
    fn = "initialize"
    coordinator_address = coordinator_address or _from_env("coordinator_address")
    num_processes = num_processes if num_processes is not None else _from_env("num_processes")
    process_id = process_id if process_id is not None else _from_env("process_id")
    try:
        num_processes = None if num_processes is None else int(num_processes)
        process_id = None if process_id is None else int(process_id)
    except ValueError as e:
        raise ValueError(f"{fn}: num_processes and process_id must be integers ({e})") from None
    if num_processes is None or num_processes <= 1:
        return False
    if coordinator_address is None or process_id is None:
        raise ValueError(
            f"{fn}: num_processes={num_processes} needs coordinator_address (host:port) and process_id "
            f"(arguments or JAXNEG_COORDINATOR_ADDRESS / JAXNEG_PROCESS_ID)"
        )
    if not 0 <= process_id < num_processes:
        raise ValueError(f"{fn}: process_id must be in [0, {num_processes}), got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)
    return True


def data_mesh(axis_name: str = DATA, devices=None) -> Mesh:
    """A 1-D mesh named ``axis_name`` over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh: devices must not be empty")
    return Mesh(np.asarray(devices), (axis_name,))


def shard_batch(batch, mesh: Mesh, axis_name: str = DATA):
    """Turn each process' local batch (a pytree of ``[b, ...]`` arrays) into global arrays.

    The leading axis of every leaf is split over ``axis_name``; the global batch is the
    concatenation of the processes' batches in process order. ``b`` must be divisible by
    this process' number of devices on the mesh.
    """
    if axis_name not in mesh.axis_names:
        raise ValueError(f"shard_batch: mesh has no axis {axis_name!r}; axes: {mesh.axis_names}")
    sharding = NamedSharding(mesh, P(axis_name))
    local = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])

    def one(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim == 0 or x.shape[0] % local:
            raise ValueError(
                f"shard_batch: every leaf needs a leading batch axis divisible by the {local} local "
                f"devices, got shape {list(x.shape)}"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(one, batch)


def gather_replicated(x, axis_name: str = DATA):
    """Inside ``jax.shard_map``: every device's ``x [n, ...]`` concatenated in device order, ``[W n, ...]``,
    typed as the same on every device (so it may update replicated state, e.g. a MoCo queue).

    ``lax.all_gather`` gives the same values but keeps them typed as device-varying; here
    each device places its rows in a zero ``[W n, ...]`` array and the arrays are summed,
    which is exact (every entry is one value plus zeros).
    """
    x = jax.numpy.asarray(x)
    w, i = jax.lax.axis_size(axis_name), jax.lax.axis_index(axis_name)
    full = jax.numpy.zeros((w * x.shape[0],) + x.shape[1:], x.dtype)
    full = jax.lax.dynamic_update_slice_in_dim(full, x, i * x.shape[0], 0)
    return jax.lax.psum(full, axis_name)
