"""jaxneg against its peers on one accelerator: symmetric InfoNCE / SigLIP value+grad, and hard-negative mining.

Every cell runs in a fresh process (peak device memory belongs to that cell alone) and
reports the best of ``--reps`` timed runs after a warm-up, and the device's peak bytes in use
(JAX: ``memory_stats()["peak_bytes_in_use"]``; torch: ``torch.cuda.max_memory_allocated``).
FLOPs are counted as ``6 N^2 D`` for a value+grad step (one ``[N, N]`` logit matrix forward,
two backward matmuls) and ``2 Q M D`` for mining; each rate is also given as a fraction of the
same framework's ``a @ b.T`` rate measured in the same run (``a [N, D]``, ``b [8192, D]``).

Cells (``--only`` picks some):

* ``jax_matmul``, ``torch_matmul``: the reference rates;
* ``jaxneg_clip`` (streamed, ``--block``), ``jaxneg_clip_dense``: ``infonce(symmetric=True)``;
* ``open_clip_clip``: open_clip ``ClipLoss`` (``logit_scale = 1/t``; normalised inputs);
* ``infcl_clip``: Inf-CL ``cal_flash_loss`` in both directions, averaged (its fp32 Triton kernel);
* ``jaxneg_siglip``, ``open_clip_siglip``: ``siglip`` streamed, open_clip ``SigLipLoss``;
* ``jaxneg_mining``: ``hard_topk`` of ``--queries`` × ``--corpus`` × ``--mining-dim``, k = 16, fp32;
* ``torch_mining``: chunked ``q @ c.T`` + ``torch.topk`` (a brute force, TF32 allowed).

A peer that is not installed (or needs CUDA where there is none) is skipped with a note; the
``bench`` extra lists the peers (``pip install -e ".[bench]"``: torch, open_clip_torch, inf-cl).

::

    python benchmarks/peers_gpu.py                                   # N = 16384, 65536, 262144; bf16, D = 512
    python benchmarks/peers_gpu.py --sizes 262144 --block 16384 --only jaxneg_clip jax_matmul
    python benchmarks/peers_gpu.py --sizes 2048 --dtype float32 --corpus 65536 --queries 1024   # a CPU smoke run

Prints a Markdown table and writes JSON to ``benchmarks/results_peers_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import run_one  # noqa: E402

CELLS = ("jax_matmul", "torch_matmul", "jaxneg_clip", "jaxneg_clip_dense", "open_clip_clip", "infcl_clip",
         "jaxneg_siglip", "open_clip_siglip", "jaxneg_mining", "torch_mining")


def _best(run, reps, sync):
    sync(run())  # compile / autotune / warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        sync(run())
        best = min(best, time.perf_counter() - t)
    return best


# ----------------------------------------------------------------------------- JAX cells


def _jax_cell(cell, n, d, dtype, block, reps, args):
    import jax
    import jax.numpy as jnp

    from jaxneg import losses, samplers

    dev = jax.devices()[0]
    ka, kb = jax.random.split(jax.random.key(0))
    sync = jax.block_until_ready
    out = {"device": dev.device_kind, "framework": "jax"}
    if cell == "jax_matmul":
        a = jax.random.normal(ka, (n, d), jnp.float32).astype(dtype)
        b = jax.random.normal(kb, (min(n, 8192), d), jnp.float32).astype(dtype)
        f = jax.jit(lambda a, b: a @ b.T)
        t = _best(lambda: f(a, b), reps, sync)
        out.update(seconds=t, tflops=2 * n * b.shape[0] * d / t / 1e12)
    elif cell == "jaxneg_mining":
        q = jax.random.normal(ka, (args.queries, args.mining_dim), jnp.float32)
        c = jax.random.normal(kb, (args.corpus, args.mining_dim), jnp.float32)
        f = jax.jit(lambda q, c: samplers.hard_topk(q, c, 16))
        t = _best(lambda: f(q, c), reps, sync)
        out.update(seconds=t, tflops=2 * args.queries * args.corpus * args.mining_dim / t / 1e12)
    else:
        q = jax.random.normal(ka, (n, d), jnp.float32)
        k = q + 0.5 * jax.random.normal(kb, (n, d), jnp.float32)
        q = (q / jnp.linalg.norm(q, axis=-1, keepdims=True)).astype(dtype)
        k = (k / jnp.linalg.norm(k, axis=-1, keepdims=True)).astype(dtype)
        bs = None if cell == "jaxneg_clip_dense" else block
        if cell == "jaxneg_siglip":
            loss = lambda q, k: losses.siglip(q, k, logit_scale=10.0, logit_bias=-10.0, block_size=bs)
        else:
            loss = lambda q, k: losses.infonce(q, k, temperature=0.07, symmetric=True, block_size=bs)
        f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        t = _best(lambda: f(q, k), reps, sync)
        out.update(seconds=t, tflops=6 * n * n * d / t / 1e12, block=bs)
    stats = dev.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_gb"] = stats["peak_bytes_in_use"] / 2**30
    return out


# ----------------------------------------------------------------------------- torch cells


def _torch_cell(cell, n, d, dtype, reps, args):
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA device here"}
    dev = torch.device("cuda")
    tdtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[dtype]
    torch.backends.cuda.matmul.allow_tf32 = True
    gen = torch.Generator(device=dev).manual_seed(0)
    sync = lambda _: torch.cuda.synchronize()
    out = {"device": torch.cuda.get_device_name(), "framework": "torch"}
    if cell == "torch_matmul":
        a = torch.randn(n, d, device=dev, generator=gen).to(tdtype)
        b = torch.randn(min(n, 8192), d, device=dev, generator=gen).to(tdtype)
        t = _best(lambda: a @ b.T, reps, sync)
        out.update(seconds=t, tflops=2 * n * b.shape[0] * d / t / 1e12)
    elif cell == "torch_mining":
        q = torch.randn(args.queries, args.mining_dim, device=dev, generator=gen)
        c = torch.randn(args.corpus, args.mining_dim, device=dev, generator=gen)

        def mine(chunk=65536):
            best_v = best_i = None
            for s in range(0, c.shape[0], chunk):
                v, i = torch.topk(q @ c[s:s + chunk].T, 16, dim=1)
                i = i + s
                if best_v is not None:
                    v, j = torch.topk(torch.cat([best_v, v], 1), 16, dim=1)
                    i = torch.gather(torch.cat([best_i, i], 1), 1, j)
                best_v, best_i = v, i
            return best_v, best_i

        t = _best(mine, reps, sync)
        out.update(seconds=t, tflops=2 * args.queries * args.corpus * args.mining_dim / t / 1e12)
    else:
        q = torch.nn.functional.normalize(torch.randn(n, d, device=dev, generator=gen), dim=-1)
        k = torch.nn.functional.normalize(q + 0.5 * torch.randn(n, d, device=dev, generator=gen), dim=-1)
        q, k = q.to(tdtype).requires_grad_(), k.to(tdtype).requires_grad_()
        if cell == "open_clip_clip":
            from open_clip.loss import ClipLoss

            fn = ClipLoss()
            scale = torch.tensor(1 / 0.07, device=dev)
            loss = lambda: fn(q, k, scale)
        elif cell == "open_clip_siglip":
            from open_clip.loss import SigLipLoss

            fn = SigLipLoss()
            scale, bias = torch.tensor(10.0, device=dev), torch.tensor(-10.0, device=dev)
            loss = lambda: fn(q, k, scale, bias)
        else:  # infcl_clip: both directions of its flash kernel
            from inf_cl import cal_flash_loss

            scale = torch.tensor(1 / 0.07, device=dev)
            loss = lambda: (cal_flash_loss(q, k, scale=scale).mean() + cal_flash_loss(k, q, scale=scale).mean()) / 2

        def step():
            q.grad = k.grad = None
            value = loss()
            value.backward()
            return value

        torch.cuda.reset_peak_memory_stats()
        t = _best(step, reps, sync)
        out.update(seconds=t, tflops=6 * n * n * d / t / 1e12)
    out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def worker(cell, n, d, dtype, block, reps, args):
    if cell.startswith(("jax", "jaxneg")):
        return {"cell": cell, "n": n, "d": d, "dtype": dtype, **_jax_cell(cell, n, d, dtype, block, reps, args)}
    try:
        return {"cell": cell, "n": n, "d": d, "dtype": dtype, **_torch_cell(cell, n, d, dtype, reps, args)}
    except ImportError as e:
        return {"cell": cell, "n": n, "d": d, "skipped": f"not installed ({e.name}); pip install -e '.[bench]'"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536, 262144])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--block", type=int, default=16384, help="jaxneg streaming block (key columns)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--queries", type=int, default=65536)
    p.add_argument("--corpus", type=int, default=1 << 20)
    p.add_argument("--mining-dim", type=int, default=128)
    p.add_argument("--dense-max", type=int, default=65536, help="dense / open_clip cells only up to this N")
    p.add_argument("--only", nargs="+", choices=CELLS)
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--worker", nargs=3, metavar=("CELL", "N", "D"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        cell, n, d = a.worker
        print(json.dumps(worker(cell, int(n), int(d), a.dtype, a.block, a.reps, a)))
        return
    cells = a.only or CELLS
    common = ["--dtype", a.dtype, "--block", str(a.block), "--reps", str(a.reps), "--queries", str(a.queries),
              "--corpus", str(a.corpus), "--mining-dim", str(a.mining_dim)]
    results = []
    for cell in cells:
        sizes = [max(a.sizes)] if cell.endswith("matmul") else [a.sizes[0]] if cell.endswith("mining") else a.sizes
        for n in sizes:
            if n > a.dense_max and cell in ("jaxneg_clip_dense", "open_clip_clip", "open_clip_siglip"):
                continue
            r = run_one(__file__, [cell, str(n), str(a.dim), *common], a.timeout)
            r.setdefault("cell", cell)
            r.setdefault("n", n)
            results.append(r)
            print(f"{cell} N={n}: {r}", file=sys.stderr, flush=True)
    rate = {fw: next((r["tflops"] for r in results if r.get("cell") == f"{fw}_matmul" and "tflops" in r), None)
            for fw in ("jax", "torch")}
    print("| cell | N | seconds | TFLOP/s | of its framework's a @ b.T rate | peak GB |\n|---|---|---|---|---|---|")
    for r in results:
        if "seconds" not in r:
            print(f"| {r['cell']} | {r.get('n')} | {r.get('skipped') or r.get('error')} | | | |")
            continue
        ref = rate["jax" if r["cell"].startswith("jax") else "torch"]
        frac = f"{r['tflops'] / ref:.2f}" if ref else "-"
        print(f"| {r['cell']} | {r['n']} | {r['seconds']:.4g} | {r['tflops']:.3g} | {frac} | {r.get('peak_gb', float('nan')):.2f} |")
    device = next((r["device"] for r in results if "device" in r), "unknown").replace(" ", "_")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"results_peers_{device}.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
