"""Exact hard-negative mining: ``samplers.hard_topk`` vs faiss ``IndexFlatIP`` on the same data.

Every measurement runs in a fresh process, so the peak memory belongs to one method. Both
processes build the same unit-normalised Gaussian queries ``[B, D]`` and corpus ``[M, D]``
(NumPy, fixed seed) and search the top ``k`` inner products of every query:

* ``seconds``: wall time of one full search (JAX: after a compile-and-run warm-up);
* ``extra peak``: the highest resident memory seen during the first search (for JAX that
  includes compiling it; a 2 ms polling thread over ``/proc/self/statm``) minus the
  resident memory with the data loaded; for JAX also the temporary buffers XLA plans
  for the compiled search (``memory_analysis().temp_size_in_bytes``);
* ``matmul frac``: ``2 B M D / seconds`` over the same process' rate for one jitted
  ``[B, D] x [D, 16384]`` block product, i.e. how close the search is to pure GEMM;
* ``agree``: fraction of result indices equal between the two methods (near-ties may
  swap between two fp32 GEMMs), written next to the exact-set agreement.

Usage::

    pip install -e ".[bench,faiss]"
    python benchmarks/mining.py                           # B = 8192, M = 1,000,000, D = 128, k = 16
    python benchmarks/mining.py --queries 1024 --corpus 100000   # a quick look

Prints a Markdown table (paste it into BENCHMARKS.md) and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time

from _harness import PeakRSS, run_one, rss_gb as _rss_gb


def _data(b, m, d):
    import numpy as np

    rng = np.random.default_rng(0)
    q = rng.standard_normal((b, d), dtype=np.float32)
    c = rng.standard_normal((m, d), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return q, c


def worker(kind, b, m, d, k, block, row_block, out_npy):
    import numpy as np

    q, c = _data(b, m, d)
    res = dict(kind=kind, b=b, m=m, d=d, k=k)
    if kind == "jax":
        import jax
        import jax.numpy as jnp

        from jaxneg.samplers import hard_topk

        qj, cj = jnp.asarray(q), jnp.asarray(c)
        del q, c
        jax.block_until_ready((qj, cj))
        search = jax.jit(lambda a, x: hard_topk(a, x, k, block_size=block, row_block_size=row_block))
        rss0 = _rss_gb()
        with PeakRSS() as peak:  # the first call: compile and run (what a fresh job pays)
            jax.block_until_ready(search(qj, cj))
        t = time.perf_counter()
        out = jax.block_until_ready(search(qj, cj))
        seconds = time.perf_counter() - t
        idx = np.asarray(out.indices)
        blk = cj[: min(m, 16384)]  # after the search, so its [B, 16384] product is not in the baseline
        mm = jax.jit(lambda a, x: a @ x.T)
        jax.block_until_ready(mm(qj, blk))
        t = time.perf_counter()
        jax.block_until_ready(mm(qj, blk))
        rate = 2 * b * blk.shape[0] * d / (time.perf_counter() - t)
        plan = search.lower(qj, cj).compile().memory_analysis()
        res["xla_temp_gb"] = getattr(plan, "temp_size_in_bytes", 0) / 2**30
        res.update(device=jax.devices()[0].device_kind, block=block, row_block=row_block,
                   matmul_gflops=rate / 1e9, matmul_frac=2 * b * m * d / seconds / rate)
    else:
        import faiss

        index = faiss.IndexFlatIP(d)
        index.add(c)
        del c
        index.search(q[:64], k)  # warm-up (thread pool, BLAS)
        rss0 = _rss_gb()
        with PeakRSS() as peak:
            t = time.perf_counter()
            _, idx = index.search(q, k)
            seconds = time.perf_counter() - t
        res.update(threads=faiss.omp_get_max_threads(), faiss=faiss.__version__)
    np.save(out_npy, idx)
    res.update(seconds=seconds, extra_peak_gb=peak.peak - rss0)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=8192)
    p.add_argument("--corpus", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--block", type=int, default=16384, help="hard_topk block_size (corpus rows per step)")
    p.add_argument("--row-block", type=int, default=256, help="hard_topk row_block_size (queries per tile)")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--out", help="write the raw results as JSON here")
    p.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        kind, *nums, npy = a.worker
        print(json.dumps(worker(kind, *map(int, nums), npy)))
        return
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        shape = [str(v) for v in (a.queries, a.corpus, a.dim, a.k, a.block, a.row_block)]
        jx = run_one(__file__, ["jax", *shape, f"{tmp}/jax.npy"], a.timeout)
        if importlib.util.find_spec("faiss") is not None:
            fs = run_one(__file__, ["faiss", *shape, f"{tmp}/faiss.npy"], a.timeout)
        else:
            fs = {"error": "faiss-cpu not installed (pip install -e '.[faiss]')"}
        if "error" not in jx and "error" not in fs:
            ij, ik = np.load(f"{tmp}/jax.npy"), np.load(f"{tmp}/faiss.npy")
            jx["agree"] = float((ij == ik).mean())
            jx["same_set"] = float(np.mean([set(r) == set(s) for r, s in zip(ij, ik)]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"device {jx.get('device', '?')}; B={a.queries}, M={a.corpus}, D={a.dim}, k={a.k}, fp32\n")
    print("| method | seconds | time / faiss | extra peak GB (XLA temp plan) | matmul frac | agree (same set) |")
    print("|---|---|---|---|---|---|")
    ref = fs.get("seconds")
    for name, r in ((f"jaxneg hard_topk (block {a.block}, tile {a.row_block})", jx), ("faiss IndexFlatIP", fs)):
        if "error" in r:
            print(f"| {name} | {r['error']} | | | | |")
            continue
        ratio = f"{r['seconds'] / ref:.2f}" if ref else "-"
        frac = f"{r['matmul_frac']:.2f}" if "matmul_frac" in r else "-"
        agree = f"{r['agree']:.4f} ({r['same_set']:.4f})" if "agree" in r else "-"
        plan = f" ({r['xla_temp_gb']:.3f})" if "xla_temp_gb" in r else ""
        print(f"| {name} | {r['seconds']:.2f} | {ratio} | {r['extra_peak_gb']:.3f}{plan} | {frac} | {agree} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump([jx, fs], f, indent=1)


if __name__ == "__main__":
    main()
