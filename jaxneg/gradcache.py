"""Gradient caching: contrastive losses over batches larger than the encoder's memory allows.

A batch-contrastive loss couples every example to every other, so its gradient cannot be
accumulated over independent micro-batches. Gradient caching (Gao et al. 2021) splits the
*encoder* instead of the loss::

    pass 1   r_c = encode(params, x_c, key_c)          every chunk c, no activations kept
    loss     L = loss_fn(r),  g = dL/dr                 once, over the whole batch r = [r_1; ...]
    pass 2   dL/dparams = sum_c  VJP(encode(., x_c, key_c))(g_c)   re-encode chunk c, pull g_c back

Pass 2 runs in a ``lax.scan`` whose carry is the running parameter gradient (fp32), so
peak memory is one chunk's activations plus the representations ``r`` and their
gradient, whatever the batch size. The result equals the gradient of
``loss_fn(chunked_encode(...))`` exactly (up to float summation order): the same chunks
see the same keys ``key_c = fold_in(rng, c)`` in both passes, so dropout replays.

Limitations: the encoder must be a pure function of ``(params, x_c, key_c)``. Layers whose
output depends on the *other* examples of the chunk (BatchNorm in training mode) make the
chunked forward differ from a full-batch forward and are not supported: use LayerNorm /
GroupNorm, or BatchNorm with frozen statistics (``use_running_average=True``).

Across devices: call the returned function inside ``jax.shard_map`` with ``axis_name``;
each device encodes its own chunks, the loss (with ``axis_name=``) sees every device's
representations, and the parameter gradients are summed over devices once, at the end.
Pass each device its own ``rng`` (e.g. ``fold_in(rng, axis_index)``) if dropout masks
should differ between devices.

References:
  Gao, Zhang, Han & Callan, *Scaling Deep Contrastive Learning Batch Size under Memory
  Limited Setup*, RepL4NLP 2021.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxneg import _checks as C
from jaxneg._array import vary_like


def _num_chunks(fn, inputs, chunk_size):
    C.integer(fn, "chunk_size", chunk_size, 1)
    leaves = jax.tree.leaves(inputs)
    if not leaves:
        raise ValueError(f"{fn}: inputs must contain at least one array")
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"{fn}: every leaf of inputs needs the same leading batch axis, got sizes {sorted(map(str, sizes))}")
    (n,) = sizes
    if n % chunk_size:
        raise ValueError(f"{fn}: chunk_size={chunk_size} must divide the batch size {n}")
    return n // chunk_size


def _chunks(inputs, n_chunks):
    return jax.tree.map(lambda x: jnp.reshape(x, (n_chunks, -1) + jnp.shape(x)[1:]), inputs)


def _unchunk(reps):
    return jax.tree.map(lambda r: jnp.reshape(r, (-1,) + r.shape[2:]), reps)


def _key(rng, c):
    return None if rng is None else jax.random.fold_in(rng, c)


def chunked_encode(encode: Callable, params, inputs, rng=None, *, chunk_size: int):
    """``encode`` applied chunk by chunk (chunk ``c`` with key ``fold_in(rng, c)``), concatenated.

    This is the forward pass that :func:`value_and_grad` differentiates; differentiating it
    directly with ``jax.grad`` gives the reference gradient (same keys, no caching).

    Args:
      encode: ``encode(params, inputs_chunk, key) -> representations`` (a pytree of arrays
        with a leading chunk axis).
      inputs: a pytree of arrays sharing the leading batch axis ``B``.
      rng: a ``jax.random`` key or ``None`` (deterministic encoders).
      chunk_size: examples per chunk; must divide ``B``.
    """
    n = _num_chunks("chunked_encode", inputs, chunk_size)
    reps = lax.map(lambda a: encode(params, a[0], _key(rng, a[1])), (_chunks(inputs, n), jnp.arange(n)))
    return _unchunk(reps)


def value_and_grad(encode: Callable, loss_fn: Callable, *, chunk_size: int, has_aux: bool = False,
                   axis_name=None) -> Callable:
    """Gradient-cached ``jax.value_and_grad`` of ``loss_fn(chunked_encode(encode, params, inputs, rng))``.

    Args:
      encode: ``encode(params, inputs_chunk, key) -> reps`` (pure; e.g. a flax
        ``model.apply`` with ``rngs={"dropout": key}``). One tower or several: ``inputs``
        and ``reps`` may be any pytrees (queries, documents, ``[B, K, ...]`` negatives).
      loss_fn: ``loss_fn(reps) -> scalar`` (or ``(scalar, aux)`` with ``has_aux``) over the
        whole batch's representations; any loss of :mod:`jaxneg.losses`.
      chunk_size: examples encoded at a time (divides the batch size).
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      axis_name: inside ``jax.shard_map``: sum the parameter gradients over this mesh axis
        (pass the same ``axis_name`` to the loss so it sees every device's representations).

    Returns:
      ``f(params, inputs, rng=None, loss_params=None) -> (loss, (grads, loss_param_grads))``
      (``((loss, aux), (...))`` with ``has_aux``), always of this structure: ``grads`` has the
      structure and dtypes of ``params``. Parameters of the loss itself (a learnable
      temperature, SigLIP's bias) go in ``loss_params``: then ``loss_fn(reps, loss_params)``
      is called and ``loss_param_grads`` has their structure; without them ``loss_fn(reps)``
      is called and ``loss_param_grads`` is ``None``.
    """
    fn = "gradcache.value_and_grad"
    if not callable(encode) or not callable(loss_fn):
        raise ValueError(f"{fn}: encode and loss_fn must be callables")
    C.integer(fn, "chunk_size", chunk_size, 1)

    def run(params, inputs, rng=None, loss_params=None):
        n = _num_chunks(fn, inputs, chunk_size)
        xs = (_chunks(inputs, n), jnp.arange(n))
        frozen = lax.stop_gradient(params)
        # pass 1: representations of every chunk, no activations kept
        reps = lax.map(lambda a: encode(frozen, a[0], _key(rng, a[1])), xs)
        g_loss = None
        if loss_params is None:
            out, g_reps = jax.value_and_grad(loss_fn, has_aux=has_aux)(_unchunk(reps))
        else:
            out, (g_reps, g_loss) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=has_aux)(
                _unchunk(reps), loss_params)
        g_reps = jax.tree.map(lambda g, r: jnp.reshape(g, r.shape).astype(r.dtype), g_reps, reps)
        # pass 2: re-encode each chunk and pull its cached gradient back
        local = params if axis_name is None else vary_like(params, jax.tree.leaves(inputs)[0])

        def step(acc, a):
            x_c, c, g_c = a
            _, vjp = jax.vjp(lambda p: encode(p, x_c, _key(rng, c)), local)
            (g_p,) = vjp(g_c)
            return jax.tree.map(lambda s, g: s + g.astype(s.dtype), acc, g_p), None

        zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.promote_types(p.dtype, jnp.float32)), local)
        zeros = vary_like(zeros, local, inputs)
        grads, _ = lax.scan(step, zeros, xs + (g_reps,))
        if axis_name is not None:
            grads = lax.psum(grads, axis_name)
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
        return out, (grads, g_loss)

    return run
