"""The statistics of result tables: an :class:`Analysis` (what to fit), :func:`fit_groups` (a law of
:mod:`jaxneg.scaling` per group, bootstrap intervals, the held-out extrapolation error, saturation), and
:func:`paired_differences` (arms against their control, seed by seed). No plots, no Markdown."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxneg import results, scaling

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
#: a law is drawn only where it beats a constant at this level (:meth:`GroupFit.law_test`)
LAW_LEVEL = 0.05


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

    def law_test(self, level: float = LAW_LEVEL) -> dict:
        r"""Whether the data support the law over a constant: ``{"supported", "F", "p", "reason"}``.

        The nested F-test of the law (``q`` parameters) against the constant (its mean), on every run:

            F = ((RSS_c - RSS_law) / (q - 1)) / (RSS_law / (n - q)),   p = P(F_{q-1, n-q} > F)

        with ``RSS`` the sums of squared residuals of the fitted target. Supported when ``p < level``, every
        parameter is identified (none :meth:`undetermined`) and there are more distinct ``x`` than
        parameters; otherwise a report draws the points, not the law, and says why (``reason``)."""
        from scipy import stats

        n, q = len(self.y), len(self.fit.params)
        distinct = len(np.unique(self.x, axis=0))
        rss_c = float(np.sum((self.y - self.y.mean()) ** 2))
        rss = float(np.sum((self.y - self.fit.predict(self._data(self.x))) ** 2))
        out = {"F": None, "p": None, "supported": False}
        if distinct <= q or n <= q:
            return {**out, "reason": f"{distinct} distinct x and {n} runs for {q} parameters"}
        if rss <= 0.0:
            f, pv = float("inf"), 0.0
        else:
            f = max((rss_c - rss) / (q - 1), 0.0) / (rss / (n - q))
            pv = float(stats.f.sf(f, q - 1, n - q))
        out.update(F=float(f), p=pv)
        if pv >= level:
            return {**out, "reason": f"the law does not beat a constant (F = {f:.3g}, p = {pv:.2g} >= {level:g})"}
        if self.undetermined():
            return {**out, "reason": f"the data cannot pin {', '.join(self.undetermined())} down"}
        return {**out, "supported": True, "reason": f"beats a constant: F = {f:.3g}, p = {pv:.2g}"}

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
                "warnings": self.warnings(), "variables": list(self.fit.law.variables), "law_test": self.law_test(),
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



def paired_differences(df, a: Analysis):
    """Each arm against its control, run by run (:attr:`Analysis.control`, paired by :attr:`Analysis.pair_by`):
    for every group ``g`` and ``x`` value ``v``, the differences ``d = y(run) - y(control)`` between each run
    and the control run that shares its ``pair_by`` value (the same seed: the same initialisation and data
    order). Returns ``(groups, xs, {(g, v): (mean d, sd d, pairs agreeing in sign with the mean, pairs,
    clear)})`` (``"(control)"`` for the control's own runs) with ``clear`` a paired t-test's rejection (two-sided, 95 %: ``|mean| > t_{0.975, n-1} sd /
    sqrt(n)``; with 2 seeds that needs ``|mean| > 9 sd``); a str saying why nothing is paired; or None
    without a control."""
    if not a.control or not isinstance(a.x, str):
        return None
    from scipy import stats

    rows = df[df.metric == a.y]
    arms, controls = results.where(rows, a.where), results.where(rows, a.control)
    if not len(arms) or not len(controls) or a.pair_by not in rows:
        return f"no runs of the control (`{a.control}`) or of the arms to pair"
    ref = controls.groupby(a.pair_by).value.agg(["mean", "size"])
    if (ref["size"] > 1).any():
        return f"the control (`{a.control}`) has several runs per {a.pair_by}; nothing paired"
    ref = ref["mean"]
    cells, groups = {}, []
    for g, part in (arms.groupby(a.group, dropna=False) if a.group else [(None, arms)]):
        groups.append(g)
        for v, at in part.groupby(a.x):
            if at.run.isin(controls.run).all():  # the control's own runs: nothing to pair them with
                cells[(g, v)] = "(control)"
                continue
            at = at[~at.run.isin(controls.run)]
            d = np.array([r.value - ref[r[a.pair_by]] for _, r in at.iterrows() if r[a.pair_by] in ref.index])
            if len(d):
                sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
                clear = len(d) > 1 and (sd == 0 and d.mean() != 0 or sd > 0 and abs(d.mean()) > stats.t.ppf(
                    0.975, len(d) - 1) * sd / np.sqrt(len(d)))
                cells[(g, v)] = (float(d.mean()), sd, int(np.sum(np.sign(d) == np.sign(d.mean()))), len(d), clear)
    return groups, sorted(arms[a.x].unique()), cells


__all__ = ["Analysis", "FLOOR", "GroupFit", "LAW_LEVEL", "RESIDUAL_FACTOR", "SATURATION_LEVEL", "fit_groups", "law_text",
           "paired_differences", "plain"]
