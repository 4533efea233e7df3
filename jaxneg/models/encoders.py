"""Flax encoders: backbones, a projection head, and the learnable logit scale / bias.

No layer uses batch statistics (LayerNorm / GroupNorm instead of BatchNorm), so every
encoder is a pure per-example function: it is exact under gradient caching
(:mod:`jaxneg.gradcache`) and under any sharding of the batch.

==================  ===========================================================  ==========
``mlp``             Dense -> LayerNorm -> GELU blocks                              ``[B, ...]``
``cnn1d``           1-D conv blocks (conv, LayerNorm, GELU, stride-2 pool), mean   ``[B, L]`` or ``[B, L, C]``
``resnet``          CIFAR-style ResNet (3x3 stem, basic blocks, GroupNorm)         ``[B, H, W, C]``
``bag_of_tokens``   token embedding, mean over non-pad tokens, MLP                 ``[B, T] int``
``id_embedding``    an embedding table row per item id                             ``[B] int``
==================  ===========================================================  ==========

:class:`Encoder` = backbone + :class:`ProjectionHead`; it returns ``(features, embedding)``:
``features`` (the backbone output, what linear probes and kNN evaluate, as in SimCLR) and
``embedding`` (the head output the loss sees).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxneg._array import vary_like


class MLP(nn.Module):
    """``len(features)`` blocks of Dense -> LayerNorm -> GELU; the input is flattened."""

    features: Sequence[int] = (256, 256)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
        for f in self.features:
            x = nn.gelu(nn.LayerNorm()(nn.Dense(f)(x)))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x


class CNN1D(nn.Module):
    """Conv(kernel) -> LayerNorm -> GELU -> max-pool(2) per entry of ``channels``, then mean over length."""

    channels: Sequence[int] = (32, 64, 128)
    kernel: int = 5

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = x.astype(jnp.float32)
        if x.ndim == 2:
            x = x[..., None]
        for c in self.channels:
            x = nn.gelu(nn.LayerNorm()(nn.Conv(c, (self.kernel,), padding="SAME")(x)))
            x = max_pool2(x)
        return jnp.mean(x, axis=1)


def max_pool2(x):
    """Max over non-overlapping pairs along the length axis: ``[..., L, C] -> [..., ceil(L / 2), C]``.

    The values of ``nn.max_pool(x, (2,), (2,), padding="SAME")`` (an odd ``L`` is padded with ``-inf`` at
    the end), computed as ``maximum(x[..., 0::2, :], x[..., 1::2, :])``: its gradient is an elementwise
    select, where ``reduce_window``'s is a ``select_and_scatter`` that made this pool 60% of the CNN's
    train step on CPU. A tie shares its gradient equally (``select_and_scatter`` gives it to the first).
    """
    if x.ndim < 2:
        raise ValueError(f"max_pool2: x must be [..., L, C], got shape {x.shape}")
    if x.shape[-2] % 2:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, 1), (0, 0)], constant_values=-jnp.inf)
    return jnp.maximum(x[..., 0::2, :], x[..., 1::2, :])


class _Block(nn.Module):
    features: int
    stride: int
    groups: int

    @nn.compact
    def __call__(self, x):
        norm = lambda: nn.GroupNorm(num_groups=min(self.groups, self.features))
        y = nn.relu(norm()(nn.Conv(self.features, (3, 3), (self.stride, self.stride), use_bias=False)(x)))
        y = norm()(nn.Conv(self.features, (3, 3), use_bias=False)(y))
        if x.shape != y.shape:
            x = norm()(nn.Conv(self.features, (1, 1), (self.stride, self.stride), use_bias=False)(x))
        return nn.relu(x + y)


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem, ``stage_sizes`` basic blocks per stage (width doubling,
    stride 2 from the second stage), GroupNorm, global average pool. (2, 2, 2, 2) with
    width 64 is ResNet-18's layout."""

    stage_sizes: Sequence[int] = (1, 1, 1)
    width: int = 32
    groups: int = 8

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = x.astype(jnp.float32) / (255.0 if x.dtype == jnp.uint8 else 1.0)
        x = nn.relu(nn.GroupNorm(num_groups=min(self.groups, self.width))(
            nn.Conv(self.width, (3, 3), use_bias=False)(x)))
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                x = _Block(self.width * 2 ** i, 2 if i and not j else 1, self.groups)(x)
        return jnp.mean(x, axis=(1, 2))


class BagOfTokens(nn.Module):
    """Embed tokens (id 0 is padding), average the non-pad ones (:func:`mean_embedding`), then an :class:`MLP`."""

    vocab_size: int
    dim: int = 128
    features: Sequence[int] = (256,)

    @nn.compact
    def __call__(self, tokens, *, train: bool = False):
        x = mean_embedding(nn.Embed(self.vocab_size, self.dim).embedding, tokens)
        return MLP(self.features)(x, train=train)


def mean_embedding(table, tokens):
    """The mean of the non-pad tokens' rows of ``table``: ``out[n] = sum_t w[n, t] * table[tokens[n, t]]``,
    ``w[n, t] = [tokens[n, t] > 0] / max(#{t: tokens[n, t] > 0}, 1)`` (id 0 is padding; an all-pad row is 0).

    ``table [V, D]`` float, ``tokens [..., T]`` int -> ``[..., D]``. The values of
    ``sum(take(table, tokens) * mask) / count`` (what ``nn.Embed`` then a masked mean computes), summed one
    token position at a time: XLA's CPU gather of the ``[..., T, D]`` block and its scatter-add gradient
    cost 9x more forward and 4x more forward + gradient, 6.5x for 8 vmapped models (part 3's step at
    k = 15, ``benchmarks/bag_of_tokens.py``). The gradient adds ``w[n, t] * g[n]`` into row
    ``tokens[n, t]``, one position per scan step; ids outside ``[0, V)`` read as NaN and get no gradient,
    as ``jnp.take``'s. No gradient for ``tokens``. Inside ``shard_map`` the table takes the tokens'
    varying axes first (``pcast``), so a replicated table's gradient is the sum of the devices', as
    ``jnp.take``'s is.
    """
    if table.ndim != 2 or tokens.ndim < 1 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"mean_embedding: table must be [V, D] float and tokens [..., T] int, got table "
                         f"{table.shape} and tokens {tokens.shape} {tokens.dtype}")
    return _mean_embedding(vary_like(table, tokens), tokens)


def _token_weights(tokens, dtype):
    m = (tokens > 0).astype(dtype)
    return m / jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)


@jax.custom_vjp
def _mean_embedding(table, tokens):
    return _mean_embedding_fwd(table, tokens)[0]


def _mean_embedding_fwd(table, tokens):
    w = _token_weights(tokens, table.dtype)

    def add(out, t):
        return out + jnp.take(table, tokens[..., t], axis=0) * w[..., t, None], None

    zero = vary_like(jnp.zeros(tokens.shape[:-1] + table.shape[1:], table.dtype), table, tokens)
    out, _ = jax.lax.scan(add, zero, jnp.arange(tokens.shape[-1]), unroll=8)
    return out, (tokens, w, table)


def _mean_embedding_bwd(res, g):
    tokens, w, table = res
    tokens, w, g = tokens.reshape(-1, tokens.shape[-1]), w.reshape(-1, tokens.shape[-1]), g.reshape(-1, g.shape[-1])

    def add(grad, t):
        return grad.at[tokens[:, t]].add(g * w[:, t, None], mode="drop"), None

    grad, _ = jax.lax.scan(add, vary_like(jnp.zeros_like(table), g), jnp.arange(tokens.shape[1]))
    return grad, None


_mean_embedding.defvjp(_mean_embedding_fwd, _mean_embedding_bwd)


class IdEmbedding(nn.Module):
    """One learned row per item id (a recommender's item tower)."""

    num_items: int
    dim: int = 128

    @nn.compact
    def __call__(self, ids, *, train: bool = False):
        return nn.Embed(self.num_items, self.dim)(ids)


class ProjectionHead(nn.Module):
    """``hidden`` Dense -> GELU layers, then a linear layer to ``out`` (SimCLR's g(.)); no
    hidden layers is a linear projection. ``output_bias=False`` leaves out the last layer's bias,
    which a loss that subtracts the batch mean from the embeddings makes redundant (as a
    convolution before BatchNorm leaves its bias out)."""

    out: int = 128
    hidden: Sequence[int] = (256,)
    output_bias: bool = True

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.gelu(nn.Dense(h)(x))
        return nn.Dense(self.out, use_bias=self.output_bias)(x)


class Encoder(nn.Module):
    """``backbone`` then ``head`` (None: the features are the embedding) -> ``(features, embedding)``."""

    backbone: nn.Module
    head: nn.Module | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        h = self.backbone(x, train=train)
        return h, (h if self.head is None else self.head(h))


BACKBONES = {"mlp": MLP, "cnn1d": CNN1D, "resnet": ResNet, "bag_of_tokens": BagOfTokens, "id_embedding": IdEmbedding}


def logit_params(temperature: float = 0.07, bias: float | None = None) -> dict:
    """Learnable logit parameters: ``log_scale = log(1/temperature)`` and optionally ``bias``."""
    if not temperature > 0:
        raise ValueError(f"logit_params: temperature must be > 0, got {temperature}")
    p = {"log_scale": jnp.asarray(-jnp.log(temperature), jnp.float32)}
    if bias is not None:
        p["bias"] = jnp.asarray(bias, jnp.float32)
    return p


def logit_scale(params: dict, max_scale: float = 100.0):
    r"""``min(exp(log_scale), max_scale)``: CLIP's learnable inverse temperature, clipped at 100
    (Radford et al. 2021); SigLIP learns ``log_scale`` and ``bias`` the same way (Zhai et al.
    2023, init scale 10 and bias -10). The temperature is ``1 / logit_scale``."""
    return jnp.exp(jnp.minimum(params["log_scale"], jnp.log(max_scale)))
