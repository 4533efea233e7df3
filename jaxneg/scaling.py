r"""Scaling-law fits in the style of Chinchilla's approach 3 (Hoffmann et al. 2022).

A law predicts a target ``y`` (a loss, an error rate) from scale variables. Registered laws:

* ``"power"``:      ``y = E + A · x^{-alpha}``                          (variable ``x``)
* ``"pure_power"``: ``y = A · x^{-alpha}``                              (variable ``x``)
* ``"chinchilla"``: ``y = E + A / N^{alpha} + B / D^{beta}``            (variables ``N``, ``D``)

Each is fitted in a log-sum-exp parameterisation (``E = exp(e)``, ``A = exp(a)``, ``B = exp(b)``),
``log ŷ = LSE(e, a - alpha log N, b - beta log D)``, by minimising the Huber loss of the log
residuals, ``sum_i huber_delta(log ŷ_i - log y_i)`` (``delta = 1e-3``), with L-BFGS from every
point of a grid of starts (4,500 for chinchilla, the paper's grid), all run in parallel with
``jax.vmap`` in float64; the best start is kept (``loss="mse_log"``: least squares on the log
residuals instead). Beside these parametric fits (Hoffmann et al.'s approach 3):

* :func:`frontier`: the compute-efficient frontier (approach 1; Cherti et al. 2023 for CLIP);
* :func:`isoflop`: IsoFLOP profiles, a parabola in ``log N`` per compute budget (approach 2);
* :func:`compute_optimal`: the loss-optimal ``N``, ``D`` per budget implied by a chinchilla fit.

Fits per group of a result table, their plots and reports: :mod:`jaxneg.analysis` (and its command
line, ``python -m jaxneg.analysis --csv FILE --x COL --y COL --law LAW --out DIR``).

References:
  Hoffmann et al., *Training Compute-Optimal Large Language Models*, 2022 (approach 3).
  Besiroglu et al., *Chinchilla Scaling: A replication attempt*, 2024 (refit; the start grid).
  Choshen, Zhang & Andreas, *A Hitchhiker's Guide to Scaling Law Estimation*, 2024 (ARE).
  Cherti et al., *Reproducible scaling laws for contrastive language-image learning*, 2023.
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
PURE_POWER = Law(
    variables=("x",),
    grid={"a": tuple(np.linspace(-4.0, 8.0, 13)), "alpha": tuple(np.linspace(-1.0, 2.0, 13))},
    log_predict=lambda p, d: p["a"] - p["alpha"] * jnp.log(d["x"]),
    public=lambda p: {"A": jnp.exp(p["a"]), "alpha": p["alpha"]},
)
LAWS.register("power")(POWER)
LAWS.register("pure_power")(PURE_POWER)
LAWS.register("chinchilla")(CHINCHILLA)
LOSSES = ("huber_log", "mse_log")
#: a start "reaches the optimum" when its objective is within this relative distance of the best start's
#: (plus 1e-12 absolute): the spread of their parameters is what the data leave undetermined
NEAR_OPTIMAL = 1e-4


def _huber(r, delta):
    """Huber of the log residual ``r``; ``delta=None``: ``r^2 / 2`` (least squares in log space)."""
    if delta is None:
        return 0.5 * r * r
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


def _padded(data: dict, log_y, weights):
    """``(data, log_y, weights)`` padded along the points to a power of two (at least 8) with copies of the
    first point at weight 0: every fit of a law on up to that many points runs the same compiled solver
    (groups, holdout fits and bootstrap refits of different sizes), and the objective is unchanged."""
    n = len(log_y)
    pad = max(8, 1 << (n - 1).bit_length()) - n
    if not pad:
        return data, log_y, weights
    data = {k: jnp.concatenate([v, jnp.repeat(v[:1], pad)]) for k, v in data.items()}
    log_y = jnp.concatenate([log_y, jnp.repeat(log_y[:1], pad)])
    weights = jnp.concatenate([weights, jnp.zeros(weights.shape[:-1] + (pad,), weights.dtype)], axis=-1)
    return data, log_y, weights


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


def resample_counts(n: int, key, strata) -> np.ndarray:
    """``[n, m]`` bootstrap multiplicities: row ``r`` counts how often each of the ``m`` points is drawn
    when every stratum (``strata [m]`` labels) is resampled with replacement to its own size, by NumPy's
    generator seeded from the ``jax.random`` ``key`` (its key data)."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    counts = np.zeros((n, len(strata)))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        draws = idx[rng.integers(0, len(idx), (n, len(idx)))]  # [n, |stratum|] point indices
        np.add.at(counts, (np.arange(n)[:, None], draws), 1)
    return counts


@dataclasses.dataclass(frozen=True)
class Fit:
    """A fitted law: ``params`` (E, A, alpha[, B, beta]), ``raw`` (log-space), ``objective``."""

    law: Law
    params: dict
    raw: dict
    objective: float
    data: dict
    target: np.ndarray
    delta: float | None   # None: least squares on log residuals (loss="mse_log")
    steps: int
    near_optimal: dict | None = None  # {name: (low, high)} over the starts within NEAR_OPTIMAL of the optimum

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

    def bootstrap(self, n: int, key, *, level: float = 0.95, strata=None, starts: int = 8) -> dict:
        """Percentile confidence intervals from ``n`` refits on points resampled with replacement.

        ``strata`` (``[n_points]`` labels): resample within each stratum only, keeping its size
        (e.g. the seeds at each ``x``: the spread then comes from seed noise alone). The
        resamples are drawn by NumPy from ``key`` (:func:`resample_counts`, a pure function of it)
        and refitted together by :meth:`refits`.
        Returns ``{name: (low, high)}`` at ``level``, ``"samples": {name: [n]}`` (reported
        parameters) and ``"raw_samples": {name: [n]}`` (for ``predict(data, raw=...)``).
        """
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"Fit.bootstrap: n must be an integer >= 2, got {n!r}")
        if not 0 < level < 1:
            raise ValueError(f"Fit.bootstrap: level must be in (0, 1), got {level}")
        m = len(self.target)
        if strata is None:
            strata = np.zeros(m)
        strata = np.asarray(strata)
        if strata.shape != (m,):
            raise ValueError(f"Fit.bootstrap: strata must have shape [{m}] (one label per point), got {list(strata.shape)}")
        raw = self.refits(resample_counts(n, key, strata), starts=starts)
        with jax.enable_x64(True):
            public = {name: np.asarray(v) for name, v in self.law.public({name: jnp.asarray(v) for name, v in raw.items()}).items()}
        tail = (1 - level) / 2 * 100
        out = {name: tuple(np.percentile(v, [tail, 100 - tail])) for name, v in sorted(public.items())}
        out["samples"] = public
        out["raw_samples"] = raw
        return out

    def refits(self, counts, *, starts: int = 8) -> dict:
        """The raw parameters ``{name: [n]}`` of ``n`` weighted refits, batched: refit ``r`` minimises the
        objective with point ``i`` weighted ``counts[r, i]`` (a bootstrap multiplicity).

        Each refit starts from this fit's optimum and from ``starts - 1`` points spread evenly
        through the start grid and keeps its best; the ``starts * n`` L-BFGS runs are one vmapped
        solve (compiled once per law and padded shape), equal to refitting each row on its own.
        The default 8 starts cost a quarter of 32 and reach the same optimum: on the 2,400 bootstrap
        refits of the main job's six fitted curves, 8 starts ended above 32 starts' objective by more
        than 1e-6 (relative) in 6 refits, by at most 4.4% (BENCHMARKS.md, "Analysis").
        """
        counts = np.asarray(counts, np.float64)
        if counts.ndim != 2 or counts.shape[1] != len(self.target) or np.any(counts < 0):
            raise ValueError(f"Fit.refits: counts must be [n, {len(self.target)}] weights >= 0, got shape "
                             f"{list(counts.shape)}")
        if not isinstance(starts, int) or starts < 1:
            raise ValueError(f"Fit.refits: starts must be an integer >= 1, got {starts!r}")
        n = len(counts)
        grid = _grid(self.law.grid)
        spread = np.linspace(0, len(grid[next(iter(grid))]) - 1, starts - 1).astype(int)
        p0 = {k: np.concatenate([[v], grid[k][spread]]) for k, v in self.raw.items()}
        with jax.enable_x64(True):
            solve = _solver(self.law.log_predict, self.delta, self.steps, weights_per_start=True)
            d = {name: jnp.asarray(v) for name, v in self.data.items()}
            w = jnp.asarray(np.repeat(counts, starts, axis=0))
            d, log_y, w = _padded(d, jnp.log(self.target), w)
            p, obj = solve({name: jnp.asarray(np.tile(v, n)) for name, v in p0.items()}, d, log_y, w, self.steps)
            best = np.arange(n) * starts + np.argmin(np.asarray(obj).reshape(n, starts), axis=1)
            return {name: np.asarray(v)[best] for name, v in p.items()}


def fit(law, data, target, *, loss: str = "huber_log", delta: float = 1e-3, starts=None, steps: int = 100,
        screen: tuple | None = (20, 64)) -> Fit:
    """Fit ``law`` to ``(data, target)``: Huber on log residuals, L-BFGS from a grid of starts.

    Args:
      law: ``"power"``, ``"chinchilla"`` (see the module docstring) or a :class:`Law`; or a
        callable ``log_predict(raw_params, data) -> log ŷ`` (then ``starts`` is required and
        the reported ``params`` are the raw ones).
      data: mapping / DataFrame with the law's variables (``x``; ``N`` and ``D``), each ``[n] > 0``.
      target: ``[n]`` observed values ``> 0``.
      loss: ``"huber_log"`` (default: Huber of ``log ŷ - log y``, robust to outlying runs) or
        ``"mse_log"`` (``sum (log ŷ - log y)^2 / 2``: for ``"pure_power"`` this is the log-log
        linear regression of the CLIP scaling papers, e.g. Cherti et al. 2023).
      delta: Huber threshold (``1e-3`` as in Hoffmann et al.; unused with ``"mse_log"``).
      starts: ``{raw_name: sequence}`` grid axes (their Cartesian product is the start set),
        default the law's grid (4,500 starts for chinchilla, 567 for power).
      steps: L-BFGS iterations per start.
      screen: ``(s, m)``: run every start for ``s`` iterations, then continue only the ``m``
        starts with the lowest objective for the remaining ``steps - s`` (an L-BFGS valley
        is chosen long before it converges; this makes the 4,500-start fit ~4x faster).
        ``None`` runs every start for ``steps``.

    Returns:
      :class:`Fit`, with ``near_optimal``: the range of each parameter over the starts that end within
      :data:`NEAR_OPTIMAL` (relative) of the best objective. A range wider than the parameter's
      bootstrap interval means the data do not pin it down: other values fit them as well (the
      objective is flat there, e.g. Huber with a small delta between two seeds' values).
    """
    fn = "scaling.fit"
    if loss not in LOSSES:
        raise ValueError(f"{fn}: loss must be one of {LOSSES}, got {loss!r}")
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
        huber = float(delta) if loss == "huber_log" else None
        solve = _solver(law.log_predict, huber, steps)
        args = _padded({k: jnp.asarray(v) for k, v in d.items()}, jnp.log(y), jnp.ones_like(jnp.asarray(y)))
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
        near = obj <= obj[best] + NEAR_OPTIMAL * abs(obj[best]) + 1e-12
        every = {k: np.asarray(v) for k, v in law.public({k: jnp.asarray(v)[near] for k, v in p.items()}).items()}
        spread = {k: (float(np.min(v)), float(np.max(v))) for k, v in every.items()}
    return Fit(law, public, raw, float(obj[best]), d, y, huber, steps, spread)


# ----------------------------------------------------------------------------- approaches 1 and 2


def frontier(x, y, *, bins: int | None = None) -> np.ndarray:
    """The compute-efficient frontier of runs ``(x [n], y [n])`` as a bool mask ``[n]``.

    * ``bins=None``: the Pareto set, every run whose ``y`` is lower than that of every run with
      a smaller ``x`` (``y_i < min_{j: x_j < x_i} y_j``; the smallest ``x`` is always on it).
      Hoffmann et al.'s approach 1 reads the envelope of the training curves this way.
    * ``bins=k``: ``k`` equal-width bins of ``log x`` between its minimum and maximum; in each
      non-empty bin the run with the lowest ``y`` (the first on ties). This is the procedure of
      Cherti et al. 2023 for the CLIP frontier.

    A power law fitted to the frontier points (``fit("pure_power", ..., loss="mse_log")`` or
    ``"power"``) is the frontier's scaling law.
    """
    fn = "scaling.frontier"
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or y.shape != x.shape or len(x) == 0:
        raise ValueError(f"{fn}: x and y must be 1-D of the same length >= 1, got shapes {list(x.shape)}, "
                         f"{list(y.shape)}")
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError(f"{fn}: x must be finite and > 0")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{fn}: y must be finite")
    keep = np.zeros(len(x), bool)
    if bins is None:
        order = np.argsort(x, kind="stable")
        best = np.inf
        i = 0
        while i < len(order):  # runs with equal x are compared with the smaller x only
            j = i
            while j < len(order) and x[order[j]] == x[order[i]]:
                j += 1
            same = order[i:j]
            keep[same] = y[same] < best
            best = min(best, y[same].min())
            i = j
        return keep
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"{fn}: bins must be None or an integer >= 1, got {bins!r}")
    lx = np.log(x)
    edges = np.linspace(lx.min(), lx.max(), int(bins) + 1)
    which = np.clip(np.searchsorted(edges, lx, side="right") - 1, 0, int(bins) - 1)
    for b in np.unique(which):
        idx = np.flatnonzero(which == b)
        keep[idx[np.argmin(y[idx])]] = True
    return keep


@dataclasses.dataclass(frozen=True)
class IsoFlop:
    """IsoFLOP profiles (Hoffmann et al. 2022, approach 2).

    Per budget ``C [m]``: ``N_opt``, ``D_opt = C / (k N_opt)``, ``loss`` at the optimum, and the
    parabola ``loss = c0 + c1 log N + c2 (log N)^2`` (``coef [m, 3]``, natural log). Exponents of
    ``N_opt ~ C^a`` and ``D_opt ~ C^b`` (least squares in log-log), with percentile bootstrap
    ``intervals`` (``{"a": (lo, hi), "b": (lo, hi)}``) when asked.
    """

    budgets: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    loss: np.ndarray
    coef: np.ndarray
    a: float
    b: float
    counts: np.ndarray
    intervals: dict | None = None


def _budget_groups(C, tolerance):
    """Group sorted ``log10 C`` into budgets: a new budget starts where the gap exceeds ``tolerance``."""
    order = np.argsort(C, kind="stable")
    lc = np.log10(C[order])
    group = np.concatenate([[0], np.cumsum(np.diff(lc) > tolerance)])
    out = np.empty(len(C), int)
    out[order] = group
    return out


def _isoflop_core(fn, logN, loss, group, budgets, k):
    """Per-budget parabola minima and the exponents; raises on a degenerate budget."""
    m = len(budgets)
    coef = np.empty((m, 3))
    n_opt, l_opt = np.empty(m), np.empty(m)
    for g in range(m):
        sel = group == g
        if len(np.unique(logN[sel])) < 3:
            raise ValueError(f"{fn}: budget {budgets[g]:.3g} has {len(np.unique(logN[sel]))} distinct model sizes; "
                             f"a parabola needs at least 3")
        c2, c1, c0 = np.polyfit(logN[sel], loss[sel], 2)
        if not c2 > 0:
            raise ValueError(f"{fn}: the IsoFLOP profile at budget {budgets[g]:.3g} is not convex (curvature "
                             f"{c2:.3g}): its runs do not bracket a minimum")
        coef[g] = (c0, c1, c2)
        n_opt[g] = -c1 / (2 * c2)
        l_opt[g] = c0 - c1 * c1 / (4 * c2)
    N = np.exp(n_opt)
    D = budgets / (k * N)
    a = np.polyfit(np.log(budgets), np.log(N), 1)[0]
    b = np.polyfit(np.log(budgets), np.log(D), 1)[0]
    return N, D, l_opt, coef, a, b


def isoflop(N, D, loss, *, flops=None, flops_per_param_token: float = 6.0, tolerance: float = 0.05,
            n_bootstrap: int = 0, level: float = 0.95, seed: int = 0) -> IsoFlop:
    """IsoFLOP profiles: fit a parabola in ``log N`` per compute budget and read off its minimum.

    Runs are grouped by budget: ``flops [n]`` when given (runs with equal values share a
    budget), else ``C = flops_per_param_token · N · D`` grouped by proximity (a new budget
    starts where sorted ``log10 C`` jumps by more than ``tolerance``, default 0.05, about 12%);
    a budget's value is the geometric mean of its runs' ``C``. Per budget the loss is fitted by
    least squares as ``c0 + c1 log N + c2 (log N)^2``, its minimum gives ``N_opt = exp(-c1 / 2 c2)``,
    ``D_opt = C / (k N_opt)``; then ``log N_opt = a log C + const`` and ``log D_opt = b log C + const``
    by least squares (``a + b = 1`` by construction). ``n_bootstrap > 1`` resamples runs within each
    budget and refits everything for percentile intervals of ``a`` and ``b``.

    Args:
      N: ``[n]`` parameters per run; D: ``[n]`` training tokens (or examples); loss: ``[n]``.
      flops: optional ``[n]`` compute budget of each run (e.g. the IsoFLOP slice it was trained for).

    Raises ``ValueError`` with fewer than 2 budgets, fewer than 3 distinct ``N`` in a budget, or
    a budget whose profile is not convex.

    Reference: Hoffmann et al. 2022, Section 3.2 and Figure 3.
    """
    fn = "scaling.isoflop"
    cols = _columns(fn, {"N": N, "D": D}, ("N", "D"))
    n = len(cols["N"])
    if len(cols["D"]) != n:
        raise ValueError(f"{fn}: N and D must have the same length, got {n} and {len(cols['D'])}")
    loss = np.asarray(loss, np.float64)
    if loss.shape != (n,) or not np.all(np.isfinite(loss)):
        raise ValueError(f"{fn}: loss must be finite with shape [{n}], got shape {list(loss.shape)}")
    if not flops_per_param_token > 0:
        raise ValueError(f"{fn}: flops_per_param_token must be > 0, got {flops_per_param_token}")
    if flops is None:
        C = flops_per_param_token * cols["N"] * cols["D"]
        group = _budget_groups(C, tolerance)
    else:
        C = _columns(fn, {"flops": flops}, ("flops",), n)["flops"]
        _, group = np.unique(C, return_inverse=True)
    m = int(group.max()) + 1
    if m < 2:
        raise ValueError(f"{fn}: all {n} runs fall into one compute budget; exponents need at least 2 budgets")
    budgets = np.array([np.exp(np.mean(np.log(C[group == g]))) for g in range(m)])
    logN = np.log(cols["N"])
    Nopt, Dopt, lopt, coef, a, b = _isoflop_core(fn, logN, loss, group, budgets, flops_per_param_token)
    intervals = None
    if n_bootstrap:
        if not isinstance(n_bootstrap, int) or n_bootstrap < 2:
            raise ValueError(f"{fn}: n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(group == g) for g in range(m)]
        sa, sb = [], []
        for _ in range(n_bootstrap):
            idx = np.concatenate([rng.choice(ix, len(ix)) for ix in members])
            try:
                *_, ai, bi = _isoflop_core(fn, logN[idx], loss[idx], group[idx], budgets, flops_per_param_token)
            except ValueError:  # a resample with too few distinct sizes, or not convex: skip it
                continue
            sa.append(ai)
            sb.append(bi)
        if len(sa) < 2:
            raise ValueError(f"{fn}: fewer than 2 of {n_bootstrap} bootstrap resamples could be fitted")
        tail = (1 - level) / 2 * 100
        intervals = {"a": tuple(np.percentile(sa, [tail, 100 - tail])), "b": tuple(np.percentile(sb, [tail, 100 - tail])),
                     "resamples": len(sa)}
    counts = np.bincount(group, minlength=m)
    return IsoFlop(budgets, Nopt, Dopt, lopt, coef, float(a), float(b), counts, intervals)


# ----------------------------------------------------------------------------- approach 3: allocation


@dataclasses.dataclass(frozen=True)
class Allocation:
    """Compute-optimal allocation from a chinchilla fit: for each ``flops [m]`` the ``N``, ``D``
    (``k N D = C``) minimising the fitted loss, the ``loss`` there, the exponents ``a``, ``b`` of
    ``N ~ C^a`` and ``D ~ C^b``, and percentile ``intervals`` (``{"N": ([m], [m]), "a": (lo, hi), ...}``)."""

    flops: np.ndarray
    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    a: float
    b: float
    intervals: dict | None = None


def _allocate(raw, C, k):
    """Closed form (Hoffmann et al. 2022, Eq. 4): ``N_opt = G (C/k)^a``, ``D_opt = G^-1 (C/k)^b`` with
    ``a = beta/(alpha+beta)``, ``b = alpha/(alpha+beta)``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``."""
    alpha, beta = np.asarray(raw["alpha"], np.float64), np.asarray(raw["beta"], np.float64)
    log_g = (np.log(alpha) + np.asarray(raw["a"]) - np.log(beta) - np.asarray(raw["b"])) / (alpha + beta)
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    lc = np.log(C / k)
    logN = np.expand_dims(log_g, -1) + np.expand_dims(a, -1) * lc
    logD = -np.expand_dims(log_g, -1) + np.expand_dims(b, -1) * lc
    return np.exp(logN), np.exp(logD), a, b


def compute_optimal(fit: Fit, flops, *, flops_per_param_token: float = 6.0, bootstrap: dict | None = None,
                    level: float = 0.95) -> Allocation:
    """The loss-optimal model size and data for compute budgets ``flops [m]`` under a chinchilla fit.

    Minimising ``E + A N^-alpha + B D^-beta`` subject to ``k N D = C`` gives
    ``N_opt = G (C/k)^a``, ``D_opt = G^-1 (C/k)^b``, ``a = beta/(alpha+beta)``,
    ``b = alpha/(alpha+beta)``, ``G = (alpha A / (beta B))^(1/(alpha+beta))`` (Hoffmann et al.
    2022, Eq. 4). ``loss`` equals ``fit.predict`` there. ``bootstrap``: the result of
    ``fit.bootstrap(n, key)``; its raw samples give percentile intervals for ``N``, ``D``, ``loss``,
    ``a`` and ``b``.
    """
    fn = "scaling.compute_optimal"
    if not isinstance(fit, Fit) or set(fit.law.variables) != {"N", "D"} or not {"alpha", "beta", "a", "b"} <= set(fit.raw):
        raise ValueError(f"{fn}: needs a fit of the 'chinchilla' law (variables N, D), got "
                         f"{getattr(getattr(fit, 'law', None), 'variables', type(fit).__name__)}")
    if not flops_per_param_token > 0:
        raise ValueError(f"{fn}: flops_per_param_token must be > 0, got {flops_per_param_token}")
    C = _columns(fn, {"flops": np.atleast_1d(flops)}, ("flops",))["flops"]
    if fit.raw["alpha"] <= 0 or fit.raw["beta"] <= 0:
        raise ValueError(f"{fn}: the fit has alpha={fit.raw['alpha']:.3g}, beta={fit.raw['beta']:.3g}; an optimum "
                         f"exists only for alpha, beta > 0")
    k = float(flops_per_param_token)
    N, D, a, b = _allocate(fit.raw, C, k)
    loss = fit.predict({"N": N, "D": D})
    intervals = None
    if bootstrap is not None:
        raw = bootstrap.get("raw_samples") if isinstance(bootstrap, Mapping) else None
        if raw is None:
            raise ValueError(f"{fn}: bootstrap must be the dict returned by fit.bootstrap(n, key)")
        ok = (np.asarray(raw["alpha"]) > 0) & (np.asarray(raw["beta"]) > 0)
        raw = {kk: np.asarray(v)[ok] for kk, v in raw.items()}
        Ns, Ds, As, Bs = _allocate(raw, C, k)
        Ls = fit.predict({"N": N, "D": D}, raw=raw)  # loss at the point estimate's allocation, per sample
        tail = (1 - level) / 2 * 100
        pct = lambda v, axis=0: tuple(np.percentile(v, [tail, 100 - tail], axis=axis))
        intervals = {"N": pct(Ns), "D": pct(Ds), "loss": pct(Ls), "a": pct(As), "b": pct(Bs), "samples": int(ok.sum())}
    return Allocation(C, N, D, loss, float(a), float(b), intervals)


__all__ = ["CHINCHILLA", "Allocation", "Fit", "IsoFlop", "LAWS", "Law", "POWER", "PURE_POWER", "compute_optimal",
           "fit", "frontier", "isoflop"]


if __name__ == "__main__":
    import sys as _sys

    _sys.exit("The command line that fits a table moved: python -m jaxneg.analysis --csv FILE --x COL --y COL "
              "--out DIR (the same options; jaxneg.scaling keeps the math)")
