"""Dense vs streaming ``infonce(symmetric=True)`` value+grad: speed vs the matmul rate, and peak memory.

Every measurement runs in a fresh process (so peak resident memory belongs to one
configuration). Figures are ratios measured in one run on one machine:

* ``matmul rate``: jitted ``a @ b.T`` for ``a, b [N, D]`` (N = 8192: the output fits),
  ``2 N^2 D / time``; also a square 4096^3 matmul as the machine's compute-bound rate.
* ``effective rate``: ``6 N^2 D / time`` of one value+grad step (one ``[N, N]`` logit
  matrix forward, two backward matmuls), as a fraction of the ``a @ b.T`` rate.
* ``extra peak``: peak RSS during compile+run minus RSS with the inputs resident.

Usage::

    python benchmarks/losses.py                      # the full table (tens of minutes on 2 cores)
    python benchmarks/losses.py --quick              # N in {2048, 8192}, D = 128
    python benchmarks/losses.py --sizes 262144 --dims 512 --dtype bfloat16   # on a GPU

Prints a Markdown table (paste it into BENCHMARKS.md) and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

from _harness import run_one


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _time(f, args, reps):
    import jax

    jax.block_until_ready(f(*args))  # compile + warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t)
    return best


def worker(kind: str, n: int, d: int, block: int | None, dtype: str, reps: int) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxneg import losses

    dev = jax.devices()[0]
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, d), jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, d), jnp.float32).astype(dtype)
    jax.block_until_ready((a, b))
    rss0 = _rss_mb()
    out = dict(kind=kind, n=n, d=d, block=block, dtype=dtype, device=dev.device_kind)
    if kind == "matmul":
        t = _time(jax.jit(lambda a, b: a @ b.T), (a, b), reps)
        out.update(seconds=t, gflops=2 * n * n * d / t / 1e9)
    elif kind == "square":
        s = jax.random.normal(key_a, (4096, 4096), jnp.float32).astype(dtype)
        t = _time(jax.jit(lambda x: x @ x), (s,), reps)
        out.update(seconds=t, gflops=2 * 4096**3 / t / 1e9)
    else:
        bs = None if kind == "dense" else block
        step = jax.jit(
            jax.value_and_grad(lambda q, k: losses.infonce(q, k, symmetric=True, block_size=bs), argnums=(0, 1))
        )
        if kind == "dense_plan":  # compile only: what XLA would allocate, without running it
            mem = step.lower(a, b).compile().memory_analysis()
            out.update(planned_temp_gb=getattr(mem, "temp_size_in_bytes", 0) / 2**30)
            return out
        t = _time(step, (a, b), reps)
        out.update(seconds=t, gflops=6 * n * n * d / t / 1e9)
    if dev.platform == "cpu":
        out["extra_peak_gb"] = (_peak_mb() - rss0) / 1024
    else:
        stats = dev.memory_stats() or {}
        out["device_peak_gb"] = stats.get("peak_bytes_in_use", 0) / 2**30
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 65536])
    p.add_argument("--dims", type=int, nargs="+", default=[128, 256])
    p.add_argument("--block", type=int, default=1024, help="streaming block size (key columns)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--dense-max", type=int, default=16384, help="run dense only up to this N (above: XLA's plan)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--quick", action="store_true", help="N in {2048, 8192}, D = 128")
    p.add_argument("--out", help="write the raw results as JSON here")
    p.add_argument("--worker", nargs=4, metavar=("KIND", "N", "D", "BLOCK"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        kind, n, d, block = a.worker
        res = worker(kind, int(n), int(d), None if block == "none" else int(block), a.dtype, a.reps)
        print(json.dumps(res))
        return
    if a.quick:
        a.sizes, a.dims = [2048, 8192], [128]

    common = ["--dtype", a.dtype, "--reps", str(a.reps)]
    results = []
    square = run_one(__file__, ["square", "4096", "4096", "none", *common], a.timeout)
    results.append(square)
    rows = []
    for d in a.dims:
        mm = run_one(__file__, ["matmul", str(min(8192, max(a.sizes))), str(d), "none", *common], a.timeout)
        results.append(mm)
        for n in a.sizes:
            reps = str(1 if n > 16384 else a.reps)
            cfg = ["--dtype", a.dtype, "--reps", reps]
            dense = (
                run_one(__file__, ["dense", str(n), str(d), "none", *cfg], a.timeout)
                if n <= a.dense_max
                else run_one(__file__, ["dense_plan", str(n), str(d), "none", *cfg], a.timeout)
            )
            stream = run_one(__file__, ["stream", str(n), str(d), str(a.block), *cfg], a.timeout)
            results += [dense, stream]
            rows.append((n, d, mm, dense, stream))
            print(f"done N={n} D={d}", file=sys.stderr, flush=True)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"device {square.get('device', '?')}, dtype {a.dtype}")
    print(f"square 4096^3 matmul: {square.get('gflops', float('nan')):.0f} GFLOP/s\n")
    print("| N | D | a@b.T GFLOP/s | dense s | dense frac | dense extra peak GB | stream s "
          f"(block {a.block}) | stream frac | stream extra peak GB | stream/dense time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, d, mm, dense, stream in rows:
        rate = mm.get("gflops", float("nan"))
        mem_key = "extra_peak_gb" if "extra_peak_gb" in stream else "device_peak_gb"

        def cell(r, key, fmt):
            return fmt.format(r[key]) if key in r else r.get("error", "-")

        if "planned_temp_gb" in dense:
            d_s, d_f, d_m, ratio = "not run", "-", f"needs {dense['planned_temp_gb']:.1f} (XLA plan)", "-"
        else:
            d_s, d_m = cell(dense, "seconds", "{:.3f}"), cell(dense, mem_key, "{:.2f}")
            d_f = f"{dense['gflops'] / rate:.2f}" if "gflops" in dense else "-"
            ratio = f"{stream['seconds'] / dense['seconds']:.2f}" if "seconds" in dense and "seconds" in stream else "-"
        s_f = f"{stream['gflops'] / rate:.2f}" if "gflops" in stream else "-"
        print(f"| {n} | {d} | {rate:.0f} | {d_s} | {d_f} | {d_m} | {cell(stream, 'seconds', '{:.3f}')} | {s_f} | "
              f"{cell(stream, mem_key, '{:.2f}')} | {ratio} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
