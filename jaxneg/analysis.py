r"""Scaling-law fits of result tables, per group; their plots; and the report that the sweeps and the command line write.

::

    df = results.load("runs/quickstart/runs")            # jaxneg.results: one row per run and metric
    fits = analysis.fit_groups(df, x="batch_size", y="eval/knn_accuracy", complement=True,
                               group="loss.temperature", n_bootstrap=200)
    analysis.plot_fits(fits).savefig("knn.png")

:func:`fit_groups` fits a law of :mod:`jaxneg.scaling` to ``y`` (or to the error ``1 - y``
with ``complement=True``) against one or more columns ``x``, once per value of a ``group``
column, with percentile bootstrap intervals and the extrapolation error on the held-out
largest ``x`` (absolute relative error, Choshen et al. 2024). :func:`write_report` turns a
list of :class:`Analysis` into ``fits.json``, one PNG per analysis (or per group) and
``report.md``: ``experiments.sweep`` calls it on a sweep's runs, and the command line on any
table::

    python -m jaxneg.analysis --csv runs.csv --x compute --y loss --group task --frontier --out fit/

Given baselines (the raw inputs' and the untrained encoder's metrics), every figure draws them and
every section reads each group's best point and saturation against them (:func:`baseline_report`).

The layers: :mod:`jaxneg.scaling` is the math (laws, fits, bootstrap, frontier, isoFLOP,
compute-optimal allocation), :mod:`jaxneg.results` the tables; this module joins them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jaxneg import results, rundir, scaling

FITS, REPORT = rundir.FITS, rundir.REPORT
#: the baseline whose value of a metric is the floor: runs below it learned nothing and are not fitted
FLOOR = "untrained encoder"


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Fit ``law`` to metric ``y`` (or ``1 - y`` with ``complement``) against ``x`` (a column, or one
    per variable of the law), per ``group``, on the rows that ``where`` (an expression of the
    columns, :func:`jaxneg.results.where`) selects; ``frontier``, ``holdout`` and ``loss`` as in
    :func:`fit_groups` (default ``"mse_log"``: least squares on the log of every seed's point, whose
    optimum is unique; Chinchilla's ``"huber_log"`` with delta 1e-3 is nearly an absolute loss, flat
    anywhere between two seeds' values). Runs below the untrained encoder are left out (and named in
    the report) unless ``keep_below_floor``."""

    x: Any
    y: str
    group: str | None = None
    law: str = "power"
    complement: bool = False
    n_bootstrap: int = 200
    level: float = 0.95
    where: str = ""
    frontier: int | None = None
    holdout: bool = True
    loss: str = "mse_log"
    keep_below_floor: bool = False
    control: str = ""        # an expression selecting the control runs (e.g. k = 0): paired differences from them
    pair_by: str = "seed"    # the column that pairs a run with its control (arms that share a seed)

    @property
    def label(self) -> str:
        return ("1 - " if self.complement else "") + self.y

    @property
    def xname(self) -> str:
        return self.x if isinstance(self.x, str) else ", ".join(self.x)

    def heading(self) -> str:
        return (f"{self.label} vs {self.xname}" + (f" (runs where `{self.where}`)" if self.where else "")
                + ("" if self.frontier is None else " (frontier)"))

    def fit(self, df, floor: float | None = None) -> list["GroupFit"]:
        """:func:`fit_groups` of this analysis on the tidy table ``df``; ``floor`` (the untrained encoder's
        value of ``y``): runs below it are left out unless ``keep_below_floor``."""
        return fit_groups(results.where(df, self.where) if self.where else df, x=self.x, y=self.y, group=self.group,
                          law=self.law, complement=self.complement, n_bootstrap=self.n_bootstrap, level=self.level,
                          holdout=self.holdout, loss=self.loss, frontier=self.frontier,
                          floor=None if self.keep_below_floor else floor)


#: the saturation test's one-sided level (:meth:`GroupFit.saturation`), and how many seed sds a law may miss a
#: point's mean by before the report flags it (:meth:`GroupFit.residuals`)
SATURATION_LEVEL, RESIDUAL_FACTOR = 0.05, 2.0


@dataclasses.dataclass
class GroupFit:
    """A law fitted to one group's points (``x [n]``, ``y [n]``: the fitted target), sorted by ``x``."""

    group: Any                 # the group field's value (None: no grouping)
    x: np.ndarray
    y: np.ndarray
    fit: scaling.Fit
    interval: dict | None      # {param: (low, high)} at ``level``, from the bootstrap; contains the estimate
    raw_samples: dict | None   # bootstrap raw parameters, for bands (Fit.predict(raw=...))
    level: float
    holdout_are: float | None  # ARE at the largest x of a fit without it (None: too few x values)
    label: str = "y"
    bounds: tuple = (0.0, None)  # the target's range (an error rate: (0, 1)); curves and bands are clipped to it
    widened: tuple = ()        # parameters whose percentile interval missed the estimate and was widened to it
    candidates: tuple | None = None  # (x, y) of every run before the frontier filter (None: no filter)
    seed_interval: dict | None = None  # {param: (low, high)} of refits resampling only the runs (seeds) at each x
    left_out: tuple = ()       # (run, x, metric value) of the runs below the floor, not fitted

    def replicates(self) -> bool:
        """Some ``x`` has more than one run (seeds)."""
        return len(np.unique(self.x, axis=0)) < len(self.x)

    def seed_share(self) -> dict:
        """``{param: width of seed_interval / width of interval}``: how much of each interval the seed
        noise alone produces (resampling the runs within each ``x``, the trend held)."""
        if not self.interval or not self.seed_interval:
            return {}
        out = {}
        for k, (lo, hi) in self.interval.items():
            slo, shi = self.seed_interval[k]
            out[k] = float((shi - slo) / (hi - lo)) if hi > lo else float("nan")
        return out

    def seed_stats(self):
        """``(x, mean, sd, n)`` of the target over the runs at each distinct ``x`` (one-variable laws)."""
        xs = np.unique(self.x)
        groups = [self.y[self.x == v] for v in xs]
        return (xs, np.array([g.mean() for g in groups]), np.array([g.std(ddof=1) if len(g) > 1 else 0.0
                                                                   for g in groups]), np.array([len(g) for g in groups]))

    def saturation(self, level: float = SATURATION_LEVEL):
        """``(x*, x_max)``: the smallest ``x`` from which no larger ``x`` is significantly better, by a one-sided
        Welch test at ``level`` of each larger ``x``'s runs (lower target) against that ``x``'s runs; ``x* =
        x_max``: not saturated (every smaller ``x`` is beaten by some larger one). None without seeds at every
        ``x`` or for a law of several variables."""
        if self.x.ndim != 1:
            return None
        from scipy import stats

        xs = np.unique(self.x)
        runs = [self.y[self.x == v] for v in xs]
        if any(len(r) < 2 for r in runs):
            return None
        for i, here in enumerate(runs):
            better = False
            for later in runs[i + 1:]:
                if np.all(later == here) or (np.std(later) == 0 and np.std(here) == 0):
                    better = bool(np.mean(later) < np.mean(here))
                else:
                    better = stats.ttest_ind(later, here, equal_var=False, alternative="less").pvalue < level
                if better:
                    break
            if not better:
                return float(xs[i]), float(xs[-1])
        return float(xs[-1]), float(xs[-1])

    def residuals(self, factor: float = RESIDUAL_FACTOR) -> list[dict]:
        """Per distinct ``x`` (one-variable laws): the runs' mean, sd and count, the law's prediction, the relative
        residual ``(prediction - mean) / mean``, and ``outside``: the prediction lies more than ``factor`` seed sds
        from the mean (never with fewer than 2 runs)."""
        if self.x.ndim != 1:
            return []
        xs, mean, sd, n = self.seed_stats()
        pred = self.fit.predict({self.fit.law.variables[0]: xs})
        return [{"x": float(v), "mean": float(m), "sd": float(d), "runs": int(k), "prediction": float(p),
                 "relative_residual": float((p - m) / m), "outside": bool(k > 1 and abs(p - m) > factor * d)}
                for v, m, d, k, p in zip(xs, mean, sd, n, pred)]

    def undetermined(self) -> dict:
        """``{param: (low, high)}`` of the parameters whose near-optimal range (starts within
        :data:`jaxneg.scaling.NEAR_OPTIMAL` of the optimum) is wider than their bootstrap interval: the data
        cannot pin them down."""
        near = self.fit.near_optimal or {}
        out = {}
        for k, (lo, hi) in near.items():
            ilo, ihi = (self.interval or {}).get(k, (lo, lo))
            if hi - lo > max(ihi - ilo, 1e-12 * max(abs(hi), 1.0)):
                out[k] = (lo, hi)
        return out

    def best(self):
        """``(x, mean)``: the ``x`` with the lowest mean target over its runs (the fitted target: an
        error rate for a ``complement`` analysis)."""
        xs = np.unique(self.x, axis=0)
        means = [self.y[np.all(self.x.reshape(len(self.x), -1) == np.reshape(v, (1, -1)), axis=1)].mean() for v in xs]
        i = int(np.argmin(means))
        return xs[i], float(means[i])

    def _data(self, x) -> dict:
        """``x`` ([m] for a one-variable law, [m, V] or a mapping otherwise) as the law's variables."""
        names = self.fit.law.variables
        if isinstance(x, dict) or hasattr(x, "columns"):
            return x
        x = np.asarray(x, np.float64)
        if len(names) == 1:
            return {names[0]: x.reshape(-1)}
        return {v: x[:, i] for i, v in enumerate(names)}

    def predict(self, x) -> np.ndarray:
        """The fitted curve at ``x``, clipped to ``bounds``."""
        return np.clip(self.fit.predict(self._data(x)), *self.bounds)

    def band(self, x, level: float | None = None):
        """``(low, high)`` pointwise percentile band of the bootstrap predictions at ``x``, clipped to ``bounds``."""
        if self.raw_samples is None:
            raise ValueError("GroupFit.band needs a bootstrap (fit_groups(..., n_bootstrap > 1))")
        level = self.level if level is None else level
        pred = self.fit.predict(self._data(x), raw=self.raw_samples)
        tail = (1 - level) / 2 * 100
        lo, hi = np.percentile(pred, tail, axis=0), np.percentile(pred, 100 - tail, axis=0)
        return np.clip(lo, *self.bounds), np.clip(hi, *self.bounds)

    def warnings(self) -> list[str]:
        """Reasons the data may not support this fit (for reports): replicates, point count, interval widths."""
        out = []
        distinct, n_params = len(np.unique(self.x, axis=0)), len(self.fit.params)
        if distinct == len(self.x):
            out.append("one run per x (no seeds): seed noise cannot be told apart from the trend")
        if distinct < n_params + 3:
            out.append(f"{distinct} distinct x for {n_params} parameters: little is left to test the law")
        for k, (lo, hi) in (self.interval or {}).items():
            est = self.fit.params[k]
            if est != 0 and hi - lo > abs(est):
                out.append(f"the {int(self.level * 100)}% interval of {k} [{lo:.3g}, {hi:.3g}] is wider than "
                           f"its estimate {est:.3g}")
        if self.widened:
            out.append(f"the percentile interval of {', '.join(self.widened)} did not contain the estimate (the "
                       f"refits pile up at a boundary, e.g. E -> 0) and was widened to include it")
        for k, (lo, hi) in self.undetermined().items():
            out.append(f"the data cannot pin {k} down: fits within {scaling.NEAR_OPTIMAL:g} of the optimum range "
                       f"over [{lo:.3g}, {hi:.3g}], wider than its interval")
        return out

    def to_json(self) -> dict:
        """A JSON-ready summary: params, interval, objective, points (sorted by x), holdout ARE, warnings."""
        saturation = self.saturation()
        return {"group_value": plain(self.group), "target": self.label, "params": self.fit.params,
                "interval": None if self.interval is None else {k: list(v) for k, v in self.interval.items()},
                "near_optimal": self.fit.near_optimal, "level": self.level, "objective": self.fit.objective,
                "num_points": int(len(self.x)), "points": {"x": self.x.tolist(), "y": self.y.tolist()},
                "residuals": self.residuals(), "left_out": [list(r) for r in self.left_out],
                "saturation": None if saturation is None else {"x": saturation[0], "largest_x": saturation[1],
                                                               "level": SATURATION_LEVEL},
                "holdout_are": self.holdout_are,
                "warnings": self.warnings(), "variables": list(self.fit.law.variables),
                "candidates": None if self.candidates is None else int(len(self.candidates[1])),
                "seed_interval": None if self.seed_interval is None else {k: list(v) for k, v in self.seed_interval.items()},
                "seed_share": self.seed_share() or None}


def plain(v):
    """A NumPy scalar as the Python value (group labels in JSON and text)."""
    return v.item() if hasattr(v, "item") else v


def fit_groups(df, *, x, y: str, group: str | None = None, law: str = "power", complement: bool = False,
               n_bootstrap: int = 200, level: float = 0.95, seed: int = 0, holdout: bool = True,
               bounds: tuple | None = None, loss: str = "mse_log", frontier: int | None = None,
               floor: float | None = None) -> list[GroupFit]:
    """Fit a law of :mod:`jaxneg.scaling` (default ``"power"``: ``t = E + A · x^{-alpha}``) to
    ``t = y`` or ``t = 1 - y`` (``complement``) per ``group``.

    Args:
      df: a tidy table from :func:`jaxneg.results.load` (rows with ``metric == y``; any table with a ``metric``
        and a ``value`` column).
      x: a numeric column, the scale variable (``batch_size``, ``sampler.num_negatives``), or one
        column per variable of the law, in its order (``["N", "D"]`` for ``"chinchilla"``).
      y: a metric name (``eval/knn_accuracy``, ``final_loss``).
      group: a column; one fit per value (``None``: one fit over every run).
      law: a registered law name.
      complement: fit the error ``1 - y`` of an accuracy (a power law decays towards ``E``).
      n_bootstrap: refits on resampled points for the ``level`` intervals and bands (0: none).
      holdout: also fit without the largest (first) ``x`` and report the ARE of its prediction
        there (needs at least 4 other distinct values).
      bounds: ``(low, high)`` range of the target, for clipping curves and bands (default
        ``(0, 1)`` with ``complement``, an error rate; else ``(0, None)``).
      loss: ``"mse_log"`` (default: least squares on log residuals, a unique optimum) or ``"huber_log"``
        (:func:`jaxneg.scaling.fit`; Chinchilla's, for refitting the paper's data).
      floor: runs whose metric ``y`` lies below it (the untrained encoder's value: they learned
        nothing) are left out of the fit and listed in ``GroupFit.left_out``.
      frontier: fit only the compute-efficient frontier of each group
        (:func:`jaxneg.scaling.frontier` of the first ``x`` against the target): ``0`` the Pareto
        set, ``k > 0`` the best run in each of ``k`` log-spaced bins; ``None`` every run.

    Intervals are percentile intervals of the bootstrap refits; where one misses the point
    estimate (refits piling up at a boundary) it is widened to contain it and the parameter
    is listed in ``GroupFit.widened``. The points are sorted by ``x`` then by the target before
    anything is fitted or resampled, so every result is a function of the table's rows as a set:
    the same in any row order.

    Returns:
      one :class:`GroupFit` per group, in sorted group order, points sorted by ``x``.
    """
    import jax

    fn = "analysis.fit_groups"
    xcols = [x] if isinstance(x, str) else list(x)
    law_obj = scaling.LAWS.get(law)
    if len(xcols) != len(law_obj.variables):
        raise ValueError(f"{fn}: law {law!r} has variables {law_obj.variables}; give one x column for each, "
                         f"got {xcols}")
    for name, col in [("x", c) for c in xcols] + [("group", group)]:
        if col is not None and col not in df.columns:
            raise ValueError(f"{fn}: {name}={col!r} is not a column; columns: "
                             f"{sorted(set(df.columns) - {'metric', 'value', 'step', 'run'})}")
    if "metric" not in df.columns:
        raise ValueError(f"{fn}: df must be a tidy table from results.load (with a 'metric' column)")
    rows = df[df.metric == y]
    if rows.empty:
        raise ValueError(f"{fn}: no rows with metric {y!r}; metrics present: {sorted(df.metric.unique())}")
    label = f"1 - {y}" if complement else y
    out = []
    groups = [(None, rows)] if group is None else sorted(rows.groupby(group), key=lambda kv: kv[0])
    for i, (g, part) in enumerate(groups):
        left_out = ()
        if floor is not None:
            below = part.value.to_numpy(np.float64) < floor
            names = part["run"].astype(str).tolist() if "run" in part.columns else [str(i) for i in part.index]
            left_out = tuple(sorted((r, float(xv), float(v)) for r, xv, v, b in
                                    zip(names, part[xcols[0]], part.value, below) if b))
            part = part[~below]
        xs = part[xcols].to_numpy(np.float64)
        t = part.value.to_numpy(np.float64)
        t = 1.0 - t if complement else t
        where = "" if group is None else f" group {group}={plain(g)!r}:"
        if np.any(t <= 0) or not np.all(np.isfinite(t)):
            raise ValueError(f"{fn}:{where} the target {label} must be finite and > 0 (fitted in log space); "
                             f"its minimum is {np.nanmin(t)}")
        order = np.lexsort(np.vstack([t[None, :], xs.T[::-1]]))  # by x (first column first), then the target
        xs, t = xs[order], t[order]
        candidates = None
        if frontier is not None:
            keep = scaling.frontier(xs[:, 0], t, bins=frontier or None)
            candidates = (xs[:, 0] if xs.shape[1] == 1 else xs, t)
            xs, t = xs[keep], t[keep]
        data = {v: xs[:, j] for j, v in enumerate(law_obj.variables)}
        try:
            f = scaling.fit(law, data, t, loss=loss)
        except ValueError as e:
            raise ValueError(f"{fn}:{where} {e}") from None
        interval = raw = None
        widened = []
        if n_bootstrap:
            boot = f.bootstrap(int(n_bootstrap), jax.random.key(seed + i), level=level)
            interval = {}
            for k, (lo, hi) in ((k, v) for k, v in boot.items() if k not in ("samples", "raw_samples")):
                est = f.params[k]
                if not lo <= est <= hi:
                    widened.append(k)
                interval[k] = (float(min(lo, est)), float(max(hi, est)))
            raw = boot["raw_samples"]
        seed_interval = None
        keys = [tuple(r) for r in xs]
        if n_bootstrap and len(set(keys)) < len(keys):  # seeds: resample the runs within each x only
            strata = np.unique(xs, axis=0, return_inverse=True)[1].reshape(-1)
            sb = f.bootstrap(int(n_bootstrap), jax.random.key(seed + 7919 + i), level=level, strata=strata)
            seed_interval = {k: (float(v[0]), float(v[1])) for k, v in sb.items() if k not in ("samples", "raw_samples")}
        are = None
        first = xs[:, 0]
        top = first.max()
        small = first < top
        if holdout and len(np.unique(xs[small], axis=0)) >= max(4, len(f.params) + 1):
            part_fit = scaling.fit(law, {v: c[small] for v, c in data.items()}, t[small], loss=loss)
            are = part_fit.are({v: c[~small] for v, c in data.items()}, t[~small])
        lim = tuple(bounds) if bounds is not None else ((0.0, 1.0) if complement else (0.0, None))
        out.append(GroupFit(g, xs[:, 0] if xs.shape[1] == 1 else xs, t, f, interval, raw, level, are, label, lim,
                            tuple(widened), candidates, seed_interval, left_out))
    return out


def law_text(fit: scaling.Fit, xname: str = "x") -> str:
    """The fitted law as text with the swept variable's name, e.g. ``0.21 + 3.1·batch_size^-0.27``."""
    p = fit.params
    power = lambda a: f"{xname}^{-a:.2f}" if a < 0 else f"{xname}^-{a:.2f}"  # a rising curve: x^+0.01, not x^--0.01
    if {"E", "A", "alpha"} == set(p):
        return f"{p['E']:.3g} + {p['A']:.3g}·{power(p['alpha'])}"
    if {"A", "alpha"} == set(p):
        return f"{p['A']:.3g}·{power(p['alpha'])}"
    return ", ".join(f"{k}={v:.3g}" for k, v in p.items())


def plot_fits(fits: Sequence[GroupFit], *, xlabel: str = "x", ylabel: str | None = None, group_label: str = "",
              extrapolate: float = 2.0, ax=None, title: str | None = None, baselines: Mapping[str, float] | None = None):
    """Data points, fitted curve and bootstrap band per group, on a log ``x`` axis.

    The curve continues (dashed) to ``extrapolate ×`` the largest ``x``; curves and bands are
    clipped to each fit's ``bounds``. The legend names the swept variable (``xlabel``) in the
    law and explains the dashed line and the band. ``baselines`` (``{label: value}`` in the
    plotted target's units, e.g. the raw input's and the untrained encoder's error) are drawn
    as labelled horizontal lines. Returns the matplotlib ``Figure`` (a new one, without pyplot,
    unless ``ax`` is given).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not fits:
        raise ValueError("analysis.plot_fits: fits is empty")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    xname = xlabel.split(".")[-1].replace(" ", "_")
    colors = [f"C{i}" for i in range(10)]
    if fits[0].x.ndim == 2:  # a law of several variables: observed against predicted
        lo = min(min(gf.y.min(), gf.predict(gf.x).min()) for gf in fits)
        hi = max(max(gf.y.max(), gf.predict(gf.x).max()) for gf in fits)
        for i, gf in enumerate(fits):
            name = "fit" if gf.group is None else f"{group_label or 'group'}={plain(gf.group)}"
            ax.scatter(gf.predict(gf.x), gf.y, color=colors[i % 10], s=14, label=f"{name}: {law_text(gf.fit)}")
        ax.plot([lo, hi], [lo, hi], color="gray", lw=1, label="observed = predicted")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"predicted {fits[0].label} ({', '.join(fits[0].fit.law.variables)})")
        ax.set_ylabel(ylabel or f"observed {fits[0].label}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        if title:
            ax.set_title(title, fontsize="medium")
        return fig
    for i, gf in enumerate(fits):
        c = colors[i % 10]
        name = "fit" if gf.group is None else f"{group_label or 'group'}={plain(gf.group)}"
        if gf.candidates is not None:  # every run, the frontier's ones ringed
            ax.scatter(*gf.candidates, color=c, s=10, alpha=0.3, zorder=2)
            ax.scatter(gf.x, gf.y, facecolor="none", edgecolor="black", s=40, zorder=4)
        if gf.replicates():  # every seed's point, faint, and the mean ± sd over seeds at each x
            ax.scatter(gf.x, gf.y, color=c, s=10, alpha=0.35, zorder=3)
            xs_, mean, sd, _ = gf.seed_stats()
            ax.errorbar(xs_, mean, yerr=sd, color=c, fmt="o", ms=4, capsize=3, lw=1, zorder=4)
        else:
            ax.scatter(gf.x, gf.y, color=c, s=18, zorder=3)
        lo, hi = gf.x.min(), gf.x.max()
        grid_in = np.geomspace(lo, hi, 100)
        grid_out = np.geomspace(hi, hi * extrapolate, 30)
        ax.plot(grid_in, gf.predict(grid_in), color=c, label=f"{name}: {law_text(gf.fit, xname)}")
        if extrapolate > 1:
            ax.plot(grid_out, gf.predict(grid_out), color=c, ls="--")
        if gf.raw_samples is not None:
            both = np.concatenate([grid_in, grid_out[1:]]) if extrapolate > 1 else grid_in
            low, high = gf.band(both)
            ax.fill_between(both, low, high, color=c, alpha=0.15, lw=0)
        saturation = gf.saturation() if gf.x.ndim == 1 else None
        if saturation is not None and saturation[0] < saturation[1]:
            ax.axvline(saturation[0], color=c, ls=":", lw=1.5, zorder=1)
        if gf.left_out:
            ax.scatter([r[1] for r in gf.left_out], [1.0 - r[2] if gf.label.startswith("1 - ") else r[2] for r in gf.left_out],
                       color=c, marker="x", s=30, zorder=3)
    for j, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color="black", ls=(":", "-.", "--")[j % 3], lw=1.2, label=f"{name}: {value:.3g}", zorder=1)
    handles, labels = ax.get_legend_handles_labels()
    if extrapolate > 1:
        handles.append(Line2D([], [], color="gray", ls="--"))
        labels.append(f"extrapolation to {extrapolate:g}× the largest {xname}")
    if any(gf.raw_samples is not None for gf in fits):
        handles.append(Patch(color="gray", alpha=0.15, lw=0))
        labels.append(f"{int(fits[0].level * 100)}% bootstrap band")
    if any(gf.replicates() for gf in fits):
        handles.append(Line2D([], [], color="gray", marker="o", ms=4, lw=1))
        labels.append("mean ± sd over seeds (faint: each seed)")
    if any(gf.candidates is not None for gf in fits):
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="black"))
        labels.append("frontier runs (fitted); faint: the others")
    if any(gf.x.ndim == 1 and (gf.saturation() or (0, 0))[0] < (gf.saturation() or (0, 0))[1] for gf in fits):
        handles.append(Line2D([], [], color="gray", ls=":"))
        labels.append(f"saturates from here (no larger {xlabel} better, Welch {SATURATION_LEVEL:g})")
    if any(gf.left_out for gf in fits):
        handles.append(Line2D([], [], ls="", marker="x", color="gray"))
        labels.append("below the untrained encoder: not fitted")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or fits[0].label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles, labels, fontsize="small")
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def baseline_report(fits: Sequence[GroupFit], baselines: Mapping[str, float], *, x, group: str | None,
                    complement: bool) -> str:
    """Markdown lines that read each group's fit against the ``baselines`` (``{label: metric value}``):
    the best point (lowest mean target over seeds) and by how much it beats each baseline, and where
    the curve saturates (:meth:`GroupFit.saturation`), and the runs left out below the floor. An error
    curve (``complement``) is reported in
    the metric's own units (accuracy = 1 - error)."""
    x = x if isinstance(x, str) else ", ".join(x)
    to_metric = (lambda e: 1.0 - e) if complement else (lambda e: e)
    lines = []
    if baselines:
        lines.append("Baselines of the same protocol: " + ", ".join(f"{k} {v:.4g}" for k, v in baselines.items())
                     + (" (a point below the untrained encoder learned nothing)." if any("untrained" in k for k in baselines)
                        else "."))
    for gf in fits:
        name = "" if gf.group is None else f"{group or 'group'}={plain(gf.group)}: "
        bx, by = gf.best()
        m = to_metric(by)
        bx = np.asarray(bx).tolist()
        bx = int(bx) if isinstance(bx, float) and bx.is_integer() else bx
        text = f"- {name}best point {x}={bx} with {m:.4g}"
        if baselines:
            text += " (" + ", ".join(f"{m - v:+.4g} over the {k}" if m >= v else f"{v - m:.4g} below the {k}"
                                     for k, v in baselines.items()) + ")"
        saturation = gf.saturation()
        if saturation is not None:
            xs, xmax = saturation
            text += (f"; not saturated: every smaller {x} is beaten by a larger one (one-sided Welch test at "
                     f"{SATURATION_LEVEL:g})" if xs == xmax else
                     f"; saturates from {x}={xs:g} (no larger {x} is better there at the {SATURATION_LEVEL:g} level "
                     f"of a one-sided Welch test over the seeds)")
        if gf.left_out:
            text += ("; left out of the fit, below the untrained encoder: "
                     + ", ".join(f"{run} ({v:.4g})" for run, _, v in gf.left_out))
        lines.append(text + ".")
    return "\n".join(lines)


def points_report(fits: Sequence[GroupFit], *, x, group: str | None, complement: bool) -> str:
    """The measured points themselves, in the metric's units: a table of each group's mean ± sd over
    seeds at every ``x`` (rows) and, with several groups, their ranking at the largest ``x`` they share,
    with whether the gap to the next is larger than the two sds together (the fits smooth over
    comparisons a reader asks point by point, such as one sampler against another at one ``k``)."""
    x = x if isinstance(x, str) else ", ".join(x)
    to_metric = (lambda e: 1.0 - e) if complement else (lambda e: e)
    stats = {}
    for gf in fits:
        xs = np.asarray(gf.x)
        if xs.ndim != 1:
            return ""
        for v in np.unique(xs):
            ys = to_metric(np.asarray(gf.y)[xs == v])
            stats[(gf.group, float(v))] = (float(np.mean(ys)), float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0)
    values = sorted({v for _, v in stats})
    groups = [gf.group for gf in fits]
    cell = lambda g, v: (f"{stats[(g, v)][0]:.4g} ± {stats[(g, v)][1]:.2g}" if (g, v) in stats else "-")  # noqa: E731
    head = [x] + [plain(g) if g is not None else "all" for g in groups]
    lines = ["Points (mean ± sd over seeds, in the metric's units):", "",
             markdown_table(head, [[f"{v:g}"] + [cell(g, v) for g in groups] for v in values])]
    shared = [v for v in values if all((g, v) in stats for g in groups)]
    if len(groups) > 1 and shared:
        top = shared[-1]
        order = sorted(groups, key=lambda g: -stats[(g, top)][0])
        parts = []
        for a, b in zip(order, order[1:]):
            (ma, sa), (mb, sb) = stats[(a, top)], stats[(b, top)]
            parts.append(f"{plain(a)} {ma:.4g} {'>' if ma - mb > sa + sb else '≈'}")
        parts.append(f"{plain(order[-1])} {stats[(order[-1], top)][0]:.4g}")
        lines += ["", f"Ranking at {x}={top:g} ('>' where the gap exceeds the two seed sds together, '≈' where it "
                      f"does not): " + " ".join(parts) + "."]
    return "\n".join(lines)


def paired_report(df, a: "Analysis") -> str:
    """Each arm against its control, run by run: for every group and ``x``, the differences ``y(run) -
    y(control)`` between each run and the control run that shares its ``a.pair_by`` value (the same seed: the
    same initialisation and data order), their mean ± sd, and how many agree in sign with the mean. Arms
    compared by their paired differences, not by overlapping means; ``*`` marks a difference a paired
    t-test rejects (two-sided, 95 %: ``|mean| > t_{0.975, n-1} sd / sqrt(n)``; with 2 seeds that needs
    ``|mean| > 9 sd``). "" without ``a.control``."""
    if not a.control or not isinstance(a.x, str):
        return ""
    from scipy import stats

    rows = df[df.metric == a.y]
    arms, controls = results.where(rows, a.where), results.where(rows, a.control)
    if not len(arms) or not len(controls) or a.pair_by not in rows:
        return f"Paired differences: no runs of the control (`{a.control}`) or of the arms to pair."
    ref = controls.groupby(a.pair_by).value.agg(["mean", "size"])
    if (ref["size"] > 1).any():
        return f"Paired differences: the control (`{a.control}`) has several runs per {a.pair_by}; nothing paired."
    ref = ref["mean"]
    cells, groups, xs = {}, [], sorted(arms[a.x].unique())
    for g, part in (arms.groupby(a.group, dropna=False) if a.group else [(None, arms)]):
        groups.append(g)
        for v, at in part.groupby(a.x):
            d = np.array([r.value - ref[r[a.pair_by]] for _, r in at.iterrows() if r[a.pair_by] in ref.index])
            if len(d):
                sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
                agree = int(np.sum(np.sign(d) == np.sign(d.mean())))
                clear = len(d) > 1 and (sd == 0 and d.mean() != 0 or sd > 0 and abs(d.mean()) > stats.t.ppf(
                    0.975, len(d) - 1) * sd / np.sqrt(len(d)))  # a paired t-test, two-sided, 95 %
                cells[(g, v)] = f"{d.mean():+.4g} ± {sd:.2g} ({agree}/{len(d)}){' *' if clear else ''}"
    head = [a.xname] + [plain(g) if g is not None else "all" for g in groups]
    table = markdown_table(head, [[f"{v:g}"] + [cells.get((g, v), "-") for g in groups] for v in xs])
    return (f"Paired differences from the control (`{a.control}`, the run with the same {a.pair_by}), in "
            f"{a.y}'s units: mean ± sd over the pairs (pairs agreeing in sign / pairs); * where a paired t-test "
            f"(two-sided, 95 %) rejects no difference:\n\n" + table)


def fit_report(fits: Sequence[GroupFit], *, x, group: str | None, law: str, n_bootstrap: int) -> str:
    """A markdown section for the fits: every parameter with its interval, points, holdout ARE, warnings.

    Works for any law (the columns are the law's parameters).
    """
    if not fits:
        raise ValueError("analysis.fit_report: fits is empty")
    x = x if isinstance(x, str) else ", ".join(x)
    pct = int(fits[0].level * 100)
    names = list(fits[0].fit.params)
    head = [group or "group"] + [f"{k} [{pct}% interval]" for k in names] + [
        "runs (distinct x)", "holdout ARE", "largest residual", f"points beyond {RESIDUAL_FACTOR:g} sd"]
    seeds = any(gf.seed_interval for gf in fits)
    if seeds:
        head.append("seed share of interval width (" + ", ".join(names) + ")")
    rows, notes = [], []
    for gf in fits:
        cells = [plain(gf.group)]
        for k in names:
            v, iv = gf.fit.params[k], (gf.interval or {}).get(k)
            star = "*" if k in gf.widened else ""
            cells.append(f"{v:.4g}" + ("" if iv is None else f" [{iv[0]:.3g}, {iv[1]:.3g}]{star}"))
        res = gf.residuals()
        worst = max(res, key=lambda r: abs(r["relative_residual"])) if res else None
        cells += [f"{len(gf.x)} ({len(np.unique(gf.x, axis=0))})",
                  "-" if gf.holdout_are is None else f"{gf.holdout_are:.3f}",
                  "-" if worst is None else f"{worst['relative_residual']:+.1%} at {worst['x']:g}",
                  ", ".join(f"{r['x']:g}" for r in res if r["outside"]) or "none"]
        if seeds:
            share = gf.seed_share()
            cells.append(", ".join(f"{share[k]:.0%}" if share[k] <= 1.5 else ">150%" for k in names) if share else "-")
        rows.append(cells)
        notes += [f"- {group or 'group'}={plain(gf.group)}: {w}" for w in gf.warnings()]
    law_obj = scaling.LAWS.get(law)
    formula = {"power": f"{fits[0].label} = E + A * {x}^-alpha",
               "pure_power": f"{fits[0].label} = A * {x}^-alpha",
               "chinchilla": f"{fits[0].label} = E + A / N^alpha + B / D^beta"}.get(
        law, f"{law} law of {law_obj.variables}")
    objective = "least squares on log residuals" if fits[0].fit.delta is None else "Huber on log residuals"
    text = (f"`{formula}` ({law} law, {objective}, L-BFGS from a grid of starts; "
            f"{pct}% percentile intervals from {n_bootstrap} bootstrap refits, widened where marked * to contain "
            f"the estimate). Holdout ARE: the fit without the largest {x}, evaluated there (|pred - obs| / obs). "
            f"Residuals: (law - mean of the runs) / mean at each {x}; the largest, and the {x} where the law misses "
            f"the runs' mean by more than {RESIDUAL_FACTOR:g} of their sds (the law does not fit there)."
            + (" Seed share: the width of the interval from refits that resample only the seeds at each "
               f"{x} (the trend held fixed), as a fraction of the full interval's width: near 100% means the "
               "seeds' noise, not the spread of x, sets the uncertainty; >150%: the seeds alone move a parameter the data "
               "cannot pin down (e.g. A and alpha of a flat curve), so neither interval says much." if seeds else "")
            + "\n\n")
    text += markdown_table(head, rows)
    if notes:
        text += "\n\n**What the data can and cannot support:**\n\n" + "\n".join(notes)
    return text


def markdown_table(head, rows) -> str:
    """A markdown table of ``head`` and ``rows`` (cells written with ``str``)."""
    out = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)




def file_stem(text: str) -> str:
    """``text`` as a file name: characters other than letters, digits and ``._+-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", text)


def plot_name(a: Analysis) -> str:
    """The PNG of an analysis: ``knn_accuracy_error_vs_batch_size.png`` (``_error`` for ``complement``)."""
    x = a.x if isinstance(a.x, str) else "_".join(a.x)
    return file_stem(a.y.split("/")[-1] + ("_error" if a.complement else "") + "_vs_" + x.split(".")[-1]) + ".png"


def write_report(df, analyses: Sequence[Analysis], out: str, *, title: str, preamble: Sequence[str] = (),
                 per_group_figures: bool = False, strict: bool = False, say: Callable[[str], None] | None = None,
                 baselines: Mapping[str, Mapping[str, float]] | Callable | None = None,
                 time_account: Mapping[str, float] | None = None,
                 timings: dict | None = None) -> str:
    """Fit every analysis on the tidy table ``df``; write ``out/fits.json``, the figures and ``out/report.md``.

    The report is ``# title``, the ``preamble`` lines, then a ``## Fits`` section per analysis:
    the parameters with their intervals (:func:`fit_report`) and the figure, one per analysis
    (:func:`plot_name`, every group in it) or one per group (``fit_<group>=<value>.png``) with
    ``per_group_figures``. An analysis that cannot be fitted yet (too few finished runs) gets a
    "not fitted" line and the rest of the report stands; with ``strict`` it raises the
    ``ValueError`` instead. ``say``: a progress callback. ``baselines`` (``{label: {metric: value}}``,
    e.g. the raw input's and the untrained encoder's, :mod:`experiments.sweep`'s ``baselines.json``) are
    drawn in every figure of a metric they have and stated in its section, with how far each group's best
    point lies above them (:func:`baseline_report`); a callable ``baselines(analysis)`` gives each analysis
    its own (a sweep of several evaluation protocols: each analysis is read against the protocol of its runs). The report ends with a ``## Time`` section: the
    seconds of each fit (also put in ``timings``, by heading) and, given ``time_account`` (``{phase:
    seconds}`` of the training), that account. Returns the report's path.
    """
    import time

    timings = {} if timings is None else timings
    os.makedirs(out, exist_ok=True)
    fits_json, sections, used = [], [], set()
    for i, a in enumerate(analyses):
        if say:
            say(f"analysis {i + 1}/{len(analyses)}: fitting {a.label} vs {a.xname}"
                + (f" per {a.group}" if a.group else "") + f" ({a.law} law, {a.n_bootstrap} bootstrap refits)")
        head = f"### {a.heading()}\n\n"
        t_fit = time.perf_counter()
        own = (baselines(a) if callable(baselines) else baselines) or {}
        floor = (own.get(FLOOR) or {}).get(a.y) if a.complement else None
        try:
            fits = a.fit(df, floor=floor)
        except ValueError as e:
            if strict:
                raise
            paired = paired_report(df, a)
            sections.append(head + f"not fitted: {e}\n" + (f"\n{paired}\n" if paired else ""))
            continue
        floors = {k: float(v[a.y]) for k, v in own.items() if a.y in v}
        title_of = f"{a.law} law, {int(a.level * 100)}% bootstrap band" + (" (frontier)" if a.frontier is not None else "")
        figures = []
        for part in ([[gf] for gf in fits] if per_group_figures else [fits]):
            if per_group_figures:
                gf = part[0]
                png = "fit.png" if gf.group is None else file_stem(f"fit_{a.group}={plain(gf.group)}") + ".png"
            else:
                png = plot_name(a)
            if png in used:
                png = png[:-4] + f"_{i + 1}.png"
            used.add(png)
            fig = plot_fits(part, xlabel=a.xname, group_label=a.group or "", title=f"{part[0].label}: {title_of}",
                            baselines={k: (1.0 - v if a.complement else v) for k, v in floors.items()})
            fig.savefig(os.path.join(out, png), dpi=120)
            figures.append(f"![{part[0].label} vs {a.xname}]({png})")
        fits_json += [{**gf.to_json(), "x": a.x, "y": a.y, "group": a.group, "law": a.law, "objective": a.loss,
                       "complement": a.complement, "where": a.where or None, "frontier": a.frontier,
                       "keep_below_floor": a.keep_below_floor} for gf in fits]
        sections.append(head + fit_report(fits, x=a.x, group=a.group, law=a.law, n_bootstrap=a.n_bootstrap)
                        + "\n\n" + baseline_report(fits, floors, x=a.x, group=a.group, complement=a.complement)
                        + "\n\n" + points_report(fits, x=a.x, group=a.group, complement=a.complement)
                        + (f"\n\n{paired}" if (paired := paired_report(df, a)) else "")
                        + "\n\n" + "\n".join(figures) + "\n")
        timings[a.heading()] = time.perf_counter() - t_fit
    rundir.write_json(os.path.join(out, FITS), fits_json)
    lines = [f"# {title}", "", *preamble, "## Fits", "", *sections, "## Time", ""]
    if time_account:
        lines += ["Training, summed over the programs (`time_account` in each `runs/*/result.json`; with several "
                  "worker processes they overlap in time): "
                  + ", ".join(f"{k.replace('program_', '')} {v:.1f} s" for k, v in time_account.items()) + ".", ""]
    lines += ["Analysis, per fit (bootstrap refits included): "
              + (", ".join(f"{k}: {v:.1f} s" for k, v in timings.items()) or "none") + ".", ""]
    path = os.path.join(out, REPORT)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


# ----------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    """``python -m jaxneg.analysis --csv FILE --x COL [--x COL2] --y COL --law LAW --out DIR``.

    Fits any table (one row per run) with the code path of the sweep reports
    (:func:`write_report`): writes ``fits.json``, one PNG per group (data, frontier runs
    ringed, fit, bootstrap band, dashed extrapolation; for a law of several variables,
    observed against predicted) and ``report.md``.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m jaxneg.analysis", description=main.__doc__.split("\n\n")[1])
    ap.add_argument("--csv", required=True, help="the table: one row per run")
    ap.add_argument("--x", action="append", required=True,
                    help="scale column(s), one per variable of the law, in its order (chinchilla: --x N --x D)")
    ap.add_argument("--y", required=True, help="the target column (loss, error, accuracy with --complement)")
    ap.add_argument("--law", default="power", help=f"one of {', '.join(scaling.LAWS.names())} (default power)")
    ap.add_argument("--group", help="fit one law per value of this column")
    ap.add_argument("--where", help="keep the rows matching this pandas query, e.g. \"dataset == 'cifar10'\"")
    ap.add_argument("--frontier", nargs="?", type=int, const=0, default=None, metavar="BINS",
                    help="fit the compute-efficient frontier only: the Pareto set, or the best run per BINS "
                         "log-spaced bins of the first x (Cherti et al. 2023)")
    ap.add_argument("--complement", action="store_true", help="fit 1 - y (an error rate from an accuracy)")
    ap.add_argument("--loss", default="mse_log", choices=scaling.LOSSES,
                    help="fit objective (default mse_log: least squares on log residuals; huber_log: Chinchilla's)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap refits for intervals and bands (0: none)")
    ap.add_argument("--holdout", action="store_true", help="report the ARE at the largest x of a fit without it")
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args(argv)
    a = Analysis(x=args.x[0] if len(args.x) == 1 else tuple(args.x), y=args.y, group=args.group, law=args.law,
                 complement=args.complement, n_bootstrap=args.bootstrap, frontier=args.frontier,
                 holdout=args.holdout, loss=args.loss)
    try:
        import pandas as pd

        if not os.path.isfile(args.csv):
            raise ValueError(f"--csv: file {args.csv!r} does not exist")
        df = pd.read_csv(args.csv)
        if args.where:
            try:
                df = df.query(args.where)
            except Exception as e:  # noqa: BLE001 - pandas raises many kinds for a bad expression
                raise ValueError(f"--where {args.where!r}: {type(e).__name__}: {e}") from None
        if args.y not in df.columns:
            raise ValueError(f"--y {args.y!r} is not a column; columns: {', '.join(df.columns)}")
        what = f"{len(df)} rows of `{args.csv}`" + (f" where `{args.where}`" if args.where else "")
        if args.frontier is not None:
            what += ("; fitted on the Pareto frontier" if args.frontier == 0 else
                     f"; fitted on the best run of each of {args.frontier} log-spaced bins of {args.x[0]}")
        path = write_report(df.assign(metric=args.y, value=df[args.y]), [a], args.out,
                            title=f"Scaling fit: {a.label} vs {a.xname}", preamble=[what + ".", ""],
                            per_group_figures=True, strict=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f in rundir.read_json(os.path.join(args.out, FITS)):
        print(json.dumps({"group": f["group"], **f["params"],
                          **({"holdout_are": f["holdout_are"]} if f["holdout_are"] is not None else {})}, default=float))
    print(f"wrote {path}", file=sys.stderr)
    return 0


__all__ = ["Analysis", "GroupFit", "file_stem", "fit_groups", "fit_report", "law_text", "main", "markdown_table",
           "paired_report",
           "plain", "plot_fits", "plot_name", "write_report"]


if __name__ == "__main__":
    sys.exit(main())
