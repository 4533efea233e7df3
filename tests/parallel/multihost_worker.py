"""One of two local processes (2 CPU devices each) of tests/parallel/test_multihost.py.

Usage: python multihost_worker.py PROCESS_ID PORT OUT_JSON
"""

import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)

import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jaxneg import losses as L  # noqa: E402
from jaxneg import parallel  # noqa: E402


def main():
    pid, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    assert parallel.initialize(f"127.0.0.1:{port}", 2, pid)
    mesh = parallel.data_mesh()
    assert mesh.devices.size == 4 and jax.process_count() == 2
    rng = np.random.default_rng(0)  # the same global batch in both processes
    q, k = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal((8, 5)).astype(np.float32)
    lab = np.array([0, 0, 1, 2, 2, 2, 3, 0], np.int32)  # classes across the process boundary
    mine = slice(4 * pid, 4 * pid + 4)
    qg, kg, lg = parallel.shard_batch((q[mine], k[mine], lab[mine]), mesh)
    want_v, want_g = jax.value_and_grad(
        lambda q, k: L.infonce(q, k, labels=lab, symmetric=True, temperature=0.1), argnums=(0, 1))(q, k)
    report = {}
    for gather in ("all_gather", "ring"):
        body = lambda q, k, lab: L.infonce(q, k, labels=lab, symmetric=True, temperature=0.1,
                                           axis_name="data", gather=gather)
        f = jax.shard_map(body, mesh=mesh, in_specs=(P("data"),) * 3, out_specs=P())
        v, g = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(qg, kg, lg)
        err = abs(float(v) - float(want_v)) / abs(float(want_v))
        for got, want in zip(g, want_g):
            for shard in got.addressable_shards:
                w = np.asarray(want)[shard.index]
                err = max(err, float(np.max(np.abs(np.asarray(shard.data) - w)) / np.max(np.abs(want))))
        report[gather] = err
    with open(out, "w") as f:
        json.dump(report, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
