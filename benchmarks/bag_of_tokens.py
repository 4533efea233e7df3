"""The bag of tokens' pooling: ``models.mean_embedding`` vs ``nn.Embed`` then a masked mean.

Both compute ``out[n] = sum_t w[n, t] table[tokens[n, t]]`` (the mean of the non-pad rows) and the
gradient of ``sum(out * g)`` for the table, on the shapes of the main job's part 3 step at k = 15
(2,176 rows of 32 tokens: 128 queries, 128 documents and 15 x 128 mined negatives; a 4,096-row
128-d table): one model, and ``--members`` models vmapped as the sweep runs them. ``reference`` is
``jnp.take(table, tokens)`` (a ``[N, T, D]`` block), masked and summed, what ``flax.linen.Embed``
and the encoder computed before; ``mean_embedding`` sums one token position at a time and has a
scatter-add per position as its gradient. Each figure is the median of ``--repeats`` timed calls
after a warm-up, all in one process, so the ratio is what to read.

Usage::

    python benchmarks/bag_of_tokens.py                  # prints a Markdown table for BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxneg.models import mean_embedding


def reference(table, tokens):
    e = jnp.take(table, tokens, axis=0)
    m = (tokens > 0).astype(e.dtype)[..., None]
    return jnp.sum(e * m, axis=-2) / jnp.maximum(jnp.sum(m, axis=-2), 1.0)


def _median_ms(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2176)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    m, n, t = a.members, a.rows, a.tokens
    tokens = rng.integers(0, a.vocab, (m, n, t))
    tokens[:, :, 3 * t // 4:] *= rng.random((m, n, t - 3 * t // 4)) < 0.5  # some padding, as documents have
    tokens = jnp.asarray(tokens, jnp.int32)
    table = jnp.asarray(rng.normal(size=(m, a.vocab, a.dim)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(m, n, a.dim)), jnp.float32)
    print(f"{jax.devices()[0].platform}, {n} rows of {t} tokens, table {a.vocab} x {a.dim}; milliseconds, "
          f"median of {a.repeats}\n")
    print("| pooling | forward, 1 model | forward + gradient, 1 model | forward + gradient, "
          f"{m} vmapped |\n|---|---|---|---|")
    rows = {}
    for name, f in (("reference (`take`, mask, sum)", reference), ("`mean_embedding`", mean_embedding)):
        value_grad = lambda tb, tk, g: jax.value_and_grad(lambda tb: jnp.sum(f(tb, tk) * g))(tb)
        one, grad_one = jax.jit(f), jax.jit(value_grad)
        grad_many = jax.jit(jax.vmap(value_grad))
        rows[name] = (_median_ms(one, (table[0], tokens[0]), a.repeats),
                      _median_ms(grad_one, (table[0], tokens[0], g[0]), a.repeats),
                      _median_ms(grad_many, (table, tokens, g), a.repeats))
        print(f"| {name} | " + " | ".join(f"{x:.2f}" for x in rows[name]) + " |")
    (ref, new) = rows.values()
    print("| reference / `mean_embedding` | " + " | ".join(f"{r / x:.1f}x" for r, x in zip(ref, new)) + " |")
    _, g_ref = jax.jit(lambda: jax.value_and_grad(lambda tb: jnp.sum(reference(tb, tokens[0]) * g[0]))(table[0]))()
    _, g_new = jax.jit(lambda: jax.value_and_grad(lambda tb: jnp.sum(mean_embedding(tb, tokens[0]) * g[0]))(table[0]))()
    print(f"\nlargest gradient difference: {float(jnp.max(jnp.abs(g_ref - g_new))):.1e}")


if __name__ == "__main__":
    main()
