"""A contrastive train step with and without gradient caching, batch 512 -> 16,384.

The step: a 4-layer MLP encoder (flax, 256 -> 1024 -> 1024 -> 1024 -> 128, GELU, dropout
0.1) shared by a query and a document tower, symmetric InfoNCE streamed over blocks of
1,024 keys (so the loss itself stays small at every batch size), gradients w.r.t. the
encoder parameters. ``plain`` is ``jax.value_and_grad`` of the whole step; ``cached`` is
``jaxneg.gradcache.value_and_grad`` with ``--chunk`` examples per chunk. Every cell runs in
a fresh process:

* ``seconds``: best of ``--reps`` steps after a compile-and-run warm-up;
* ``extra peak``: the highest RSS during the first call (compile + run; 2 ms polling)
  minus the RSS with the inputs and parameters loaded; in brackets the temporary buffers
  XLA plans for the compiled step (``memory_analysis().temp_size_in_bytes``).

Usage::

    python benchmarks/gradcache.py                        # B in {512, 2048, 8192, 16384}
    python benchmarks/gradcache.py --sizes 512 2048 --chunk 128

Prints a Markdown table (paste it into BENCHMARKS.md) and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from _harness import PeakRSS, rss_gb, run_one


def worker(kind, b, chunk, reps):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxneg import gradcache, losses

    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(3):
                x = nn.Dropout(0.1, deterministic=False)(nn.gelu(nn.Dense(1024)(x)))
            return nn.Dense(128)(x)

    model = Encoder()
    params = model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, jnp.ones((1, 256)))
    kq, kd = jax.random.split(jax.random.key(1))
    x = (jax.random.normal(kq, (b, 256)), jax.random.normal(kd, (b, 256)))

    def encode(p, inputs, key):
        q, d = inputs
        return (model.apply(p, q, rngs={"dropout": jax.random.fold_in(key, 0)}),
                model.apply(p, d, rngs={"dropout": jax.random.fold_in(key, 1)}))

    def loss_fn(reps):
        return losses.infonce(reps[0], reps[1], temperature=0.05, symmetric=True, block_size=min(b, 1024))

    if kind == "plain":
        step = jax.jit(jax.value_and_grad(lambda p, x, key: loss_fn(encode(p, x, key))))
    else:
        step = jax.jit(gradcache.value_and_grad(encode, loss_fn, chunk_size=min(chunk, b)))
    key = jax.random.key(2)
    jax.block_until_ready((params, x))
    rss0 = rss_gb()
    with PeakRSS() as peak:
        jax.block_until_ready(step(params, x, key))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(step(params, x, key))
        best = min(best, time.perf_counter() - t)
    plan = step.lower(params, x, key).compile().memory_analysis()
    return dict(kind=kind, b=b, chunk=chunk if kind == "cached" else None, seconds=best,
                extra_peak_gb=peak.peak - rss0, xla_temp_gb=getattr(plan, "temp_size_in_bytes", 0) / 2**30,
                device=jax.devices()[0].device_kind)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192, 16384])
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--out")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        kind, b, chunk, reps = a.worker
        print(json.dumps(worker(kind, int(b), int(chunk), int(reps))))
        return
    results, rows = [], []
    for b in a.sizes:
        plain = run_one(__file__, ["plain", str(b), str(a.chunk), str(a.reps)], a.timeout)
        cached = run_one(__file__, ["cached", str(b), str(a.chunk), str(a.reps)], a.timeout)
        results += [plain, cached]
        rows.append((b, plain, cached))
        print(f"done B={b}", file=sys.stderr, flush=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"device {rows[0][1].get('device', '?')}; chunk {a.chunk}, fp32\n")
    print("| B | plain s | cached s | cached / plain time | plain extra peak GB (XLA temp) | cached extra peak GB (XLA temp) |")
    print("|---|---|---|---|---|---|")

    def mem(r):
        return f"{r['extra_peak_gb']:.3f} ({r['xla_temp_gb']:.3f})" if "xla_temp_gb" in r else r.get("error", "-")

    for b, pl, ca in rows:
        ratio = f"{ca['seconds'] / pl['seconds']:.2f}" if "seconds" in pl and "seconds" in ca else "-"
        ps = f"{pl['seconds']:.3f}" if "seconds" in pl else pl.get("error", "-")
        cs = f"{ca['seconds']:.3f}" if "seconds" in ca else ca.get("error", "-")
        print(f"| {b} | {ps} | {cs} | {ratio} | {mem(pl)} | {mem(ca)} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
