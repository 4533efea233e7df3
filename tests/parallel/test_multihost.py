"""Two local processes (gloo collectives over 127.0.0.1), 2 CPU devices each: the sharded
loss and its gradients equal the single-process values."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

WORKER = pathlib.Path(__file__).with_name("multihost_worker.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port():
    """A free port for the coordinator, outside the kernel's ephemeral range.

    A port taken with ``bind(("127.0.0.1", 0))`` and closed is free again for any process's next
    ephemeral port (a gloo connection, a jupyter kernel, another test's client) before the
    coordinator binds it. The kernel never hands out a port below the ephemeral range, so one
    found free there stays free until the coordinator takes it.
    """
    low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) \
        if os.path.exists("/proc/sys/net/ipv4/ip_local_port_range") else 32768
    start = 10000 + (os.getpid() * 7919) % max(1, low - 10000)  # spread concurrent sessions apart
    for i in range(low - 10000):
        port = 10000 + (start - 10000 + i) % (low - 10000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in 10000..{low - 1}")


@pytest.mark.slow
def test_two_processes_match_the_single_process_loss(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(i), str(port), str(tmp_path / f"{i}.json")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    for i in range(2):
        errs = json.loads((tmp_path / f"{i}.json").read_text())
        assert set(errs) == {"all_gather", "ring"}
        assert max(errs.values()) < 1e-5, errs
