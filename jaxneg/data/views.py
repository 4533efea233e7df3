r"""Random views (augmentations) in JAX, for 1-D signals and images.

Each ``*_view(key, x)`` transforms one example and is ``vmap``-ed by :func:`two_views`, so
the two views of a batch are a pure function of ``(key, x)`` (the trainer derives ``key``
from ``(seed, step)``).

1-D signals ``x [L]`` (MNIST-1D; SimCLR-style views as used for time series):
  random resized crop (length ``U[min_crop, 1]·L`` resampled back to ``L`` by linear
  interpolation), circular shift by up to ``max_shift`` samples, amplitude scaling by
  ``U[1-scale, 1+scale]`` and additive Gaussian noise ``N(0, noise^2)``.

Images ``x [H, W, C]`` (floats in ``[0, 1]`` or uint8; SimCLR, Chen et al. 2020, App. A):
  random resized crop (area ``U[min_area, 1]``, aspect ratio log-uniform in ``[3/4, 4/3]``,
  bilinear), horizontal flip (p = 0.5), colour jitter with probability ``p_jitter``
  (brightness, contrast and saturation factors ``U[1-s, 1+s]``, applied in that order) and
  grayscale with probability ``p_gray``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxneg import _checks as C


def signal_view(key, x, *, min_crop: float = 0.6, max_shift: int = 4, scale: float = 0.2, noise: float = 0.1):
    """One random view of a 1-D signal ``x [L]`` (see the module docstring)."""
    n = x.shape[0]
    k_len, k_start, k_shift, k_scale, k_noise = jax.random.split(key, 5)
    length = jax.random.uniform(k_len, (), minval=min_crop, maxval=1.0) * (n - 1)
    start = jax.random.uniform(k_start, ()) * ((n - 1) - length)
    grid = start + jnp.linspace(0.0, 1.0, n) * length
    y = jnp.interp(grid, jnp.arange(n, dtype=x.dtype), x)
    y = jnp.roll(y, jax.random.randint(k_shift, (), -max_shift, max_shift + 1))
    y = y * jax.random.uniform(k_scale, (), minval=1.0 - scale, maxval=1.0 + scale)
    return (y + noise * jax.random.normal(k_noise, y.shape)).astype(x.dtype)


def _to_float(x):
    return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


def _gray(x):
    return jnp.sum(x * jnp.asarray([0.299, 0.587, 0.114], x.dtype), axis=-1, keepdims=True) if x.shape[-1] == 3 \
        else jnp.mean(x, axis=-1, keepdims=True)


def image_view(key, x, *, min_area: float = 0.2, strength: float = 0.4, p_jitter: float = 0.8,
               p_gray: float = 0.2):
    """One random view of an image ``x [H, W, C]`` (see the module docstring), floats in ``[0, 1]``."""
    x = _to_float(x)
    h, w, c = x.shape
    ks = jax.random.split(key, 9)
    area = jax.random.uniform(ks[0], (), minval=min_area, maxval=1.0)
    log_ratio = jax.random.uniform(ks[1], (), minval=jnp.log(3 / 4), maxval=jnp.log(4 / 3))
    ratio = jnp.exp(log_ratio)
    ch = jnp.clip(jnp.sqrt(area / ratio), 0.0, 1.0) * h
    cw = jnp.clip(jnp.sqrt(area * ratio), 0.0, 1.0) * w
    top = jax.random.uniform(ks[2], ()) * (h - ch)
    left = jax.random.uniform(ks[3], ()) * (w - cw)
    sy, sx = h / ch, w / cw
    y = jax.image.scale_and_translate(x, (h, w, c), (0, 1), jnp.stack([sy, sx]), jnp.stack([-top * sy, -left * sx]),
                                      method="linear", antialias=False)
    y = jnp.where(jax.random.bernoulli(ks[4]), y[:, ::-1], y)
    f = jax.random.uniform(ks[5], (3,), minval=1.0 - strength, maxval=1.0 + strength)
    jit = y * f[0]
    jit = (jit - jnp.mean(jit)) * f[1] + jnp.mean(jit)
    jit = (jit - _gray(jit)) * f[2] + _gray(jit)
    y = jnp.where(jax.random.bernoulli(ks[6], p_jitter), jnp.clip(jit, 0.0, 1.0), y)
    y = jnp.where(jax.random.bernoulli(ks[7], p_gray), jnp.broadcast_to(_gray(y), y.shape), y)
    return y


def identity_view(key, x):
    """No augmentation (images are still converted to floats in ``[0, 1]``)."""
    del key
    return _to_float(x) if x.ndim == 3 else x


VIEWS: dict[str, Callable] = {"signal": signal_view, "image": image_view, "identity": identity_view}


def two_views(key, x, view: str | Callable = "signal", **kwargs):
    """Two independent random views of every example of ``x [B, ...]`` -> ``(v1, v2)``.

    ``view`` is a name in :data:`VIEWS` or a callable ``view(key, x_i, **kwargs)``.
    """
    fn = VIEWS.get(view) if isinstance(view, str) else view
    if fn is None:
        C.choice("two_views", "view", view, sorted(VIEWS))
    b = jnp.shape(x)[0]
    keys = jax.random.split(key, (2, b))
    f = jax.vmap(lambda k, xi: fn(k, xi, **kwargs))
    return f(keys[0], x), f(keys[1], x)
