r"""Scaling-law fits in the style of Chinchilla's approach 3 (Hoffmann et al. 2022).

A law predicts a target ``y`` (a loss, an error rate) from scale variables. Registered laws:

* ``"power"``:      ``y = E + A · x^{-alpha}``                          (variable ``x``)
* ``"chinchilla"``: ``y = E + A / N^{alpha} + B / D^{beta}``            (variables ``N``, ``D``)

Each is fitted in a log-sum-exp parameterisation (``E = exp(e)``, ``A = exp(a)``, ``B = exp(b)``),
``log ŷ = LSE(e, a - alpha log N, b - beta log D)``, by minimising the Huber loss of the log
residuals, ``sum_i huber_delta(log ŷ_i - log y_i)`` (``delta = 1e-3``), with L-BFGS from every
point of a grid of starts (4,500 for chinchilla, the paper's grid), all run in parallel with
``jax.vmap`` in float64; the best start is kept.

References:
  Hoffmann et al., *Training Compute-Optimal Large Language Models*, 2022 (approach 3).
  Besiroglu et al., *Chinchilla Scaling: A replication attempt*, 2024 (refit; the start grid).
  Choshen, Zhang & Andreas, *A Hitchhiker's Guide to Scaling Law Estimation*, 2024 (ARE).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxneg.registry import Registry

LAWS = Registry("scaling law")


@dataclasses.dataclass(frozen=True)
class Law:
    """A law in log space: ``log_predict(raw, data) -> log ŷ``; ``raw`` names -> start grids."""

    variables: tuple
    grid: Mapping[str, tuple]
    log_predict: Callable
    public: Callable  # raw params -> the reported dict (E, A, alpha, ...)


def _lse(*terms):
    return jax.nn.logsumexp(jnp.stack(terms), axis=0)


POWER = Law(
    variables=("x",),
    grid={"e": tuple(np.linspace(-2.0, 1.0, 7)), "a": tuple(np.linspace(-2.0, 6.0, 9)),
          "alpha": tuple(np.linspace(0.0, 2.0, 9))},
    log_predict=lambda p, d: _lse(p["e"] + 0.0 * d["x"], p["a"] - p["alpha"] * jnp.log(d["x"])),
    public=lambda p: {"E": jnp.exp(p["e"]), "A": jnp.exp(p["a"]), "alpha": p["alpha"]},
)
CHINCHILLA = Law(
    variables=("N", "D"),
    grid={"e": (-1.0, -0.5, 0.0, 0.5, 1.0), "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
          "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
          "beta": (0.0, 0.5, 1.0, 1.5, 2.0)},
    log_predict=lambda p, d: _lse(p["e"] + 0.0 * d["N"], p["a"] - p["alpha"] * jnp.log(d["N"]),
                                  p["b"] - p["beta"] * jnp.log(d["D"])),
    public=lambda p: {"E": jnp.exp(p["e"]), "A": jnp.exp(p["a"]), "alpha": p["alpha"], "B": jnp.exp(p["b"]),
                      "beta": p["beta"]},
)
LAWS.register("power")(POWER)
LAWS.register("chinchilla")(CHINCHILLA)


def _huber(r, delta):
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _columns(fn, data, names, n=None):
    out = {}
    for v in names:
        try:
            col = np.asarray(data[v], np.float64)
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{fn}: data needs a column {v!r} for this law") from None
        if col.ndim != 1 or (n is not None and len(col) != n):
            raise ValueError(f"{fn}: data[{v!r}] must be 1-D with {n} values, got shape {list(col.shape)}")
        if not np.all(np.isfinite(col)) or np.any(col <= 0):
            raise ValueError(f"{fn}: data[{v!r}] must be finite and > 0")
        out[v] = col
    return out


def _target(fn, target):
    y = np.asarray(target, np.float64)
    if y.ndim != 1:
        raise ValueError(f"{fn}: target must be 1-D [n], got shape {list(y.shape)}")
    if len(y) < 2:
        raise ValueError(f"{fn}: target needs at least 2 values, got {len(y)}")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"{fn}: target must be finite; {int(bad.sum())} value(s) are not "
                         f"(first at index {int(np.argmax(bad))}: {y[np.argmax(bad)]})")
    if np.any(y <= 0):
        i = int(np.argmax(y <= 0))
        raise ValueError(f"{fn}: target must be > 0 (the laws are fitted in log space); "
                         f"{int(np.sum(y <= 0))} value(s) are not (first at index {i}: {y[i]})")
    return y


def _identifiable(fn, data: dict, n_params: int) -> None:
    """Refuse data that cannot determine the law: a constant variable, or fewer distinct points than parameters."""
    for name, col in data.items():
        if len(np.unique(col)) < 2:
            raise ValueError(f"{fn}: data[{name!r}] takes a single value ({col[0]:g}); an exponent of {name} "
                             f"needs at least 2 distinct values")
    distinct = len(np.unique(np.stack(list(data.values()), axis=1), axis=0))
    if distinct < n_params:
        raise ValueError(f"{fn}: {distinct} distinct data point(s) for a law with {n_params} parameters: the fit "
                         f"would be exact and its intervals empty; give at least {n_params} distinct points")


def _grid(grid: Mapping[str, tuple]) -> dict:
    names = sorted(grid)
    pts = np.array(list(itertools.product(*(grid[k] for k in names))), np.float64)
    return {k: pts[:, i] for i, k in enumerate(names)}


@functools.lru_cache(maxsize=32)  # one compiled solver per law: fits of the same law reuse it
def _solver(log_predict, delta, steps, weights_per_start=False):
    """``solve(starts, data, log_y, weights, steps) -> (params, objective)`` vmapped over starts
    (and over ``weights [starts, n]`` too with ``weights_per_start``)."""
    opt = optax.lbfgs()

    def objective(p, data, log_y, w):
        return jnp.sum(w * _huber(log_predict(p, data) - log_y, delta))

    def one(p0, data, log_y, w, steps=steps):
        f = lambda p: objective(p, data, log_y, w)
        vg = optax.value_and_grad_from_state(f)

        def step(carry, _):
            p, s = carry
            value, g = vg(p, state=s)
            u, s = opt.update(g, s, p, value=value, grad=g, value_fn=f)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, length=steps)
        value = f(p)
        return p, jnp.where(jnp.isfinite(value), value, jnp.inf)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, 0 if weights_per_start else None, None)), static_argnums=4)


@dataclasses.dataclass(frozen=True)
class Fit:
    """A fitted law: ``params`` (E, A, alpha[, B, beta]), ``raw`` (log-space), ``objective``."""

    law: Law
    params: dict
    raw: dict
    objective: float
    data: dict
    target: np.ndarray
    delta: float
    steps: int

    def predict(self, data, raw: Mapping | None = None) -> np.ndarray:
        """``ŷ [m]`` for new ``data`` (a mapping or DataFrame with the law's variables, ``[m]`` each).

        With ``raw`` (``{name: [n]}`` raw parameter samples, e.g. ``bootstrap(...)["raw_samples"]``)
        returns ``[n, m]``: one prediction per sample, for confidence bands.
        """
        d = _columns("Fit.predict", data, self.law.variables)
        with jax.enable_x64(True):
            d = {k: jnp.asarray(v) for k, v in d.items()}
            if raw is None:
                return np.exp(np.asarray(self.law.log_predict({k: jnp.asarray(v) for k, v in self.raw.items()}, d)))
            if set(raw) != set(self.raw):
                raise ValueError(f"Fit.predict: raw must have the keys {sorted(self.raw)}, got {sorted(raw)}")
            r = {k: jnp.asarray(v, jnp.float64)[:, None] for k, v in raw.items()}
            return np.exp(np.asarray(self.law.log_predict(r, {k: v[None, :] for k, v in d.items()})))

    def are(self, data, target) -> float:
        """Absolute relative error ``mean |ŷ - y| / y`` on (held-out) points (Choshen et al. 2024)."""
        y = np.asarray(target, np.float64).reshape(-1)
        if len(y) == 0 or not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ValueError(f"Fit.are: target must be finite and > 0 with at least 1 value, got {y.tolist()}")
        return float(np.mean(np.abs(self.predict(data) - y) / y))

    def bootstrap(self, n: int, key, *, level: float = 0.95) -> dict:
        """Percentile confidence intervals from ``n`` refits on points resampled with replacement.

        Each refit starts from this fit's optimum and from 31 points spread evenly through
        the start grid, so ``n`` refits cost ``32 n`` L-BFGS runs (vmapped over the starts).
        Returns ``{name: (low, high)}`` at ``level``, ``"samples": {name: [n]}`` (reported
        parameters) and ``"raw_samples": {name: [n]}`` (for ``predict(data, raw=...)``).
        """
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"Fit.bootstrap: n must be an integer >= 2, got {n!r}")
        if not 0 < level < 1:
            raise ValueError(f"Fit.bootstrap: level must be in (0, 1), got {level}")
        m = len(self.target)
        counts = np.stack([np.bincount(np.asarray(jax.random.randint(k, (m,), 0, m)), minlength=m)
                           for k in jax.random.split(key, n)]).astype(np.float64)
        grid = _grid(self.law.grid)
        spread = np.linspace(0, len(grid[next(iter(grid))]) - 1, 31).astype(int)
        starts = {k: np.concatenate([[v], grid[k][spread]]) for k, v in self.raw.items()}
        per_refit = 1 + len(spread)
        with jax.enable_x64(True):  # every refit's starts in one vmapped solve: n * per_refit L-BFGS runs
            solve = _solver(self.law.log_predict, self.delta, self.steps, weights_per_start=True)
            d = {name: jnp.asarray(v) for name, v in self.data.items()}
            p0 = {name: jnp.asarray(np.tile(v, n)) for name, v in starts.items()}
            w = jnp.asarray(np.repeat(counts, per_refit, axis=0))
            p, obj = solve(p0, d, jnp.log(self.target), w, self.steps)
            best = np.arange(n) * per_refit + np.argmin(np.asarray(obj).reshape(n, per_refit), axis=1)
            raw = {name: np.asarray(v)[best] for name, v in p.items()}
            public = {name: np.asarray(v) for name, v in self.law.public({name: jnp.asarray(v) for name, v in raw.items()}).items()}
        tail = (1 - level) / 2 * 100
        out = {name: tuple(np.percentile(v, [tail, 100 - tail])) for name, v in sorted(public.items())}
        out["samples"] = public
        out["raw_samples"] = raw
        return out


def fit(law, data, target, *, loss: str = "huber_log", delta: float = 1e-3, starts=None, steps: int = 100,
        screen: tuple | None = (20, 64)) -> Fit:
    """Fit ``law`` to ``(data, target)``: Huber on log residuals, L-BFGS from a grid of starts.

    Args:
      law: ``"power"``, ``"chinchilla"`` (see the module docstring) or a :class:`Law`; or a
        callable ``log_predict(raw_params, data) -> log ŷ`` (then ``starts`` is required and
        the reported ``params`` are the raw ones).
      data: mapping / DataFrame with the law's variables (``x``; ``N`` and ``D``), each ``[n] > 0``.
      target: ``[n]`` observed values ``> 0``.
      loss: ``"huber_log"`` (the only one: Huber of ``log ŷ - log y``).
      delta: Huber threshold (``1e-3`` as in Hoffmann et al.).
      starts: ``{raw_name: sequence}`` grid axes (their Cartesian product is the start set),
        default the law's grid (4,500 starts for chinchilla, 567 for power).
      steps: L-BFGS iterations per start.
      screen: ``(s, m)``: run every start for ``s`` iterations, then continue only the ``m``
        starts with the lowest objective for the remaining ``steps - s`` (an L-BFGS valley
        is chosen long before it converges; this makes the 4,500-start fit ~4x faster).
        ``None`` runs every start for ``steps``.

    Returns:
      :class:`Fit`.
    """
    fn = "scaling.fit"
    if loss != "huber_log":
        raise ValueError(f"{fn}: loss must be 'huber_log', got {loss!r}")
    if isinstance(law, str):
        law = LAWS.get(law)
    elif callable(law) and not isinstance(law, Law):
        if not starts:
            raise ValueError(f"{fn}: a custom law function needs starts={{name: values}}")
        user = law
        law = Law(variables=tuple(getattr(data, "columns", None) or data.keys()), grid=starts,
                  log_predict=user, public=lambda p: dict(p))
    if not (isinstance(delta, (int, float)) and delta > 0):
        raise ValueError(f"{fn}: delta must be > 0, got {delta!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{fn}: steps must be an integer >= 1, got {steps!r}")
    y = _target(fn, target)
    d = _columns(fn, data, law.variables, len(y))
    grid = dict(law.grid)
    if starts is not None:
        unknown = sorted(set(starts) - set(grid))
        if unknown:
            raise ValueError(f"{fn}: unknown start parameter(s) {unknown}; valid: {sorted(grid)}")
        grid.update({k: tuple(np.atleast_1d(v)) for k, v in starts.items()})
    law = dataclasses.replace(law, grid=grid)
    _identifiable(fn, d, len(grid))
    s = _grid(grid)
    with jax.enable_x64(True):
        solve = _solver(law.log_predict, float(delta), steps)
        args = ({k: jnp.asarray(v) for k, v in d.items()}, jnp.log(y), jnp.ones_like(jnp.asarray(y)))
        p = {k: jnp.asarray(v) for k, v in s.items()}
        if screen is not None and screen[0] < steps and screen[1] < len(next(iter(s.values()))):
            p, obj = solve(p, *args, int(screen[0]))
            keep = np.argsort(np.asarray(obj), kind="stable")[: int(screen[1])]
            p, obj = solve({k: v[keep] for k, v in p.items()}, *args, steps - int(screen[0]))
        else:
            p, obj = solve(p, *args, steps)
        obj = np.asarray(obj)
        if not np.any(np.isfinite(obj)):
            raise FloatingPointError(f"{fn}: every start diverged")
        best = int(np.argmin(obj))
        raw = {k: float(v[best]) for k, v in p.items()}
        public = {k: float(v) for k, v in law.public({k: jnp.asarray(v) for k, v in raw.items()}).items()}
    return Fit(law, public, raw, float(obj[best]), d, y, float(delta), steps)


__all__ = ["CHINCHILLA", "Fit", "LAWS", "Law", "POWER", "fit"]
