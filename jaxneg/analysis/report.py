"""The Markdown report of the fits: each section's parameters, baselines, points and paired differences
(:func:`fit_report`, :func:`baseline_report`, :func:`points_report`, :func:`paired_report`), and
:func:`write_report`, which fits every analysis and writes ``fits.json``, the figures and ``report.md``."""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from jaxneg import results, rundir, scaling
from jaxneg.analysis.figures import file_stem, plot_fits, plot_name, plot_panels, plot_points
from jaxneg.analysis.fits import (FLOOR, RESIDUAL_FACTOR, SATURATION_LEVEL, Analysis, GroupFit, paired_differences,
                                  plain)

FITS, REPORT = rundir.FITS, rundir.REPORT

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
        text = f"- {name}best point {x}={bx} with {m:.4g}" + _floor_clause(m, baselines, x, higher=complement)
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


def _floor_clause(best: float, baselines: Mapping[str, float], x: str, higher: bool = True) -> str:
    """How far a group's best point (in the metric's units; ``higher``: higher is better, else lower, e.g. an
    error) lies from each baseline, and when every point is worse than one, which: worse than the untrained
    encoder, the runs learned nothing and no claim about ``x`` holds for them; worse than another baseline (the
    raw input: a kNN on the signals, or BM25 in retrieval) they learned, but less than it gives at this budget."""
    if not baselines:
        return ""
    def distance(k, v):
        d = best - v
        if higher:
            return f"{d:+.4g} over the {k}" if d >= 0 else f"{-d:.4g} below the {k}"
        return f"{-d:.4g} below the {k}" if d <= 0 else f"{d:.4g} above the {k}"

    text = " (" + ", ".join(distance(k, v) for k, v in baselines.items()) + ")"
    under = [k for k, v in baselines.items() if (best < v if higher else best > v)]
    worse = "below" if higher else "above"
    if any("untrained" in k for k in under):
        text += (f"; every point lies {worse} the untrained encoder: these runs learned nothing, so no claim about "
                 f"{x} holds for them")
    elif under:
        text += f"; every point lies {worse} the {' and the '.join(under)}"
    return text


def points_floor_report(df, a: Analysis, baselines: Mapping[str, float]) -> str:
    """:func:`baseline_report` for an analysis with no fit: each group's best point (mean over seeds; the
    metric's units: the highest with ``a.complement``, e.g. an accuracy whose error is fitted, else the lowest)
    against the ``baselines``. "" without baselines or points."""
    if not baselines or not isinstance(a.x, str):
        return ""
    rows = results.where(df, a.where) if a.where else df
    rows = rows[(rows.metric == a.y) & rows.value.notna()]
    if not len(rows) or a.x not in rows:
        return ""
    lines = []
    for g, part in (rows.groupby(a.group, dropna=False) if a.group else [(None, rows)]):
        means = part.groupby(a.x).value.mean()
        v = means.idxmax() if a.complement else means.idxmin()
        name = "" if g is None else f"{a.group}={plain(g)}: "
        lines.append(f"- {name}best point {a.x}={plain(v)} with {means[v]:.4g}"
                     + _floor_clause(means[v], baselines, a.x, higher=a.complement) + ".")
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



def paired_report(df, a: Analysis) -> str:
    """:func:`~jaxneg.analysis.fits.paired_differences` as a table: mean ± sd (pairs agreeing in sign /
    pairs), ``*`` where the paired t-test rejects no difference. Arms are read by their paired differences,
    not by overlapping means. "" without ``a.control``."""
    out = paired_differences(df, a)
    if out is None:
        return ""
    if isinstance(out, str):
        return f"Paired differences: {out}."
    groups, xs, cells = out
    cell = lambda c: c if isinstance(c, str) else f"{c[0]:+.4g} ± {c[1]:.2g} ({c[2]}/{c[3]}){' *' if c[4] else ''}"  # noqa: E731
    head = [a.xname] + [plain(g) if g is not None else "all" for g in groups]
    table = markdown_table(head, [[f"{v:g}"] + [cell(cells[(g, v)]) if (g, v) in cells else "-" for g in groups]
                                  for v in xs])
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






def write_report(df, analyses: Sequence[Analysis], out: str, *, title: str, preamble: Sequence[str] = (),
                 per_group_figures: bool = False, strict: bool = False, say: Callable[[str], None] | None = None,
                 baselines: Mapping[str, Mapping[str, float]] | Callable | None = None,
                 time_account: Mapping[str, float] | None = None,
                 timings: dict | None = None, context: Sequence[str] = ()) -> str:
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
    # (``context``: metrics shown beside each analysis' points, e.g. the regime of the runs' negatives)
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
        floors = {k: float(v[a.y]) for k, v in own.items() if a.y in v}
        target = (lambda v: 1.0 - v) if a.complement else (lambda v: v)  # noqa: E731
        drawn = {k: target(v) for k, v in floors.items()}
        control = _control(df, a, target)
        try:
            fits = a.fit(df, floor=floor)
        except ValueError as e:
            if strict:
                raise
            paired = paired_report(df, a)
            png = plot_name(a)
            png = png[:-4] + f"_{i + 1}.png" if png in used else png
            used.add(png)
            fig = _points_figure(df, a, target, drawn, control)
            text = ""
            if fig is not None:
                fig.savefig(os.path.join(out, png), dpi=120)
                text = f"\n\n![{a.label} vs {a.xname}]({png})"
            text += _regime_figure(df, a, context, out, png, used)
            sections.append(head + f"not fitted: {e}. The figure draws the runs' points"
                            + (", the control" if control else "") + " and the baselines, no law.\n\n"
                            + baseline_lines(floors)
                            + (f"\n\n{lines}" if (lines := points_floor_report(df, a, floors)) else "")
                            + (f"\n\n{paired}" if paired else "")
                            + (f"\n\n{ctx}" if (ctx := context_report(df, a, context)) else "") + text + "\n")
            continue
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
                            baselines=drawn, control=control)
            fig.savefig(os.path.join(out, png), dpi=120)
            figures.append(f"![{part[0].label} vs {a.xname}]({png})")
        fits_json += [{**gf.to_json(), "x": a.x, "y": a.y, "group": a.group, "law": a.law, "objective": a.loss,
                       "complement": a.complement, "where": a.where or None, "frontier": a.frontier,
                       "keep_below_floor": a.keep_below_floor, "baselines": floors, "control": control or None}
                      for gf in fits]
        sections.append(head + fit_report(fits, x=a.x, group=a.group, law=a.law, n_bootstrap=a.n_bootstrap)
                        + "\n\n" + law_lines(fits, group=a.group)
                        + "\n\n" + baseline_report(fits, floors, x=a.x, group=a.group, complement=a.complement)
                        + "\n\n" + points_report(fits, x=a.x, group=a.group, complement=a.complement)
                        + (f"\n\n{paired}" if (paired := paired_report(df, a)) else "")
                        + (f"\n\n{ctx}" if (ctx := context_report(df, a, context)) else "")
                        + "\n\n" + "\n".join(figures) + _regime_figure(df, a, context, out, png, used) + "\n")
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


def context_report(df, a: Analysis, metrics: Sequence[str]) -> str:
    """The means over seeds of ``metrics`` (e.g. the regime of the negatives: how much of the softmax's mass
    the anchor's own class takes) for the runs of analysis ``a`` and its control, per group and ``x``: what a
    reader needs to tell why a curve does or does not move. "" when its runs have none of them."""
    if not metrics or not isinstance(a.x, str):
        return ""
    rows = results.where(df, a.where) if a.where else df
    if a.control:
        rows = pd.concat([rows, results.where(df, a.control)]).drop_duplicates()
    rows = rows[rows.metric.isin(metrics)]
    if not len(rows) or a.x not in rows:
        return ""
    keys = ([a.group] if a.group else []) + [a.x]
    table = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean")
    shown = [m for m in metrics if m in table.columns and table[m].notna().any()]
    if not shown:
        return ""
    lines = [markdown_table(keys + [m.split("/")[-1] for m in shown],
                            [[plain(v) for v in (k if isinstance(k, tuple) else (k,))]
                             + ["-" if not np.isfinite(r[m]) else f"{r[m]:.3g}" for m in shown]
                             for k, r in table.iterrows()])]
    return ("The runs' negatives (means over seeds, the control included; `results.csv` has each run):\n\n"
            + "\n".join(lines))


def _regime_figure(df, a: Analysis, metrics: Sequence[str], out: str, png: str, used: set) -> str:
    """The regime panels of analysis ``a`` (:func:`plot_panels`: one panel per metric of ``metrics`` its runs
    report, against its ``x``, per group, the control's mean a grey line), saved beside its figure ``png`` as
    ``*_regime.png``; the Markdown that shows it, or "" when its runs report none of them."""
    if not metrics or not isinstance(a.x, str):
        return ""
    rows = results.where(df, a.where) if a.where else df
    rows = rows[rows.metric.isin(metrics)]
    if not len(rows) or a.x not in rows:
        return ""
    ctrl = results.where(df, a.control) if a.control else rows.iloc[:0]
    panels, control = {}, {}
    train = [m for m in metrics if m.split("/")[-1].startswith("train_")]
    own = [m for m in train if m.split("/")[-1] == "train_" + a.y.split("/")[-1]]
    drawn = [m for m in metrics if m not in train and not m.endswith("batch_duplicates")] + (own or train[:1])
    for m in drawn:  # (the training queries' own metric of the analysis' y only; the batch's duplicates, a
        # property of the data, stay in the table)
        mine = rows[(rows.metric == m) & rows.value.notna()]
        if not len(mine):
            continue
        label = m.split("/")[-1]
        panels[label] = _group_points(mine, a)
        values = ctrl[(ctrl.metric == m)].value.dropna()
        if len(values):
            control[label] = float(values.mean())
    if not panels:
        return ""
    name = png[:-4] + "_regime.png"
    used.add(name)
    fig = plot_panels(panels, xlabel=a.xname, group_label=a.group or "", control=control,
                      title=f"the runs' negatives (last step){'; grey: the control' if control else ''}")
    fig.savefig(os.path.join(out, name), dpi=110)
    return f"\n\n![the regime of the runs' negatives vs {a.xname}]({name})"


def law_lines(fits: Sequence[GroupFit], *, group: str | None) -> str:
    """Which groups' laws the figure draws and why the others are not (:meth:`GroupFit.law_test`)."""
    lines = []
    for gf in fits:
        t = gf.law_test()
        name = "the fit" if gf.group is None else f"{group}={plain(gf.group)}"
        lines.append(f"- {name}: " + (f"law drawn; it {t['reason']}." if t["supported"] else
                                      f"no law drawn: {t['reason']}; the figure shows its points."))
    return "Laws drawn (a law must beat a constant, nested F-test at 0.05, and be identified):\n\n" + "\n".join(lines)


def baseline_lines(floors: Mapping[str, float]) -> str:
    """The baselines' sentence of a section with no fit."""
    if not floors:
        return "No baselines: the runs span several protocols or none was recorded."
    return "Baselines of the same protocol: " + ", ".join(f"{k} {v:.4g}" for k, v in floors.items()) + "."


def _control(df, a: Analysis, target) -> dict:
    """``{label: mean fitted target}`` of the analysis' control runs (``a.control``), or {}."""
    if not a.control:
        return {}
    rows = results.where(df, a.control)
    rows = rows[rows.metric == a.y]
    if not len(rows):
        return {}
    return {f"control ({len(rows)} runs)": float(target(rows.value.mean()))}


def _points_figure(df, a: Analysis, target, baselines, control):
    """The points of an analysis that could not be fitted (one x variable), or None."""
    if not isinstance(a.x, str):
        return None
    rows = results.where(df, a.where) if a.where else df
    rows = rows[rows.metric == a.y]
    if not len(rows) or a.x not in rows:
        return None
    points = {g: (x, target(y)) for g, (x, y) in _group_points(rows, a).items()}
    return plot_points(points, xlabel=a.xname, ylabel=a.label, group_label=a.group or "", baselines=baselines,
                       control=control, title=f"{a.label}: points, no law")


def _group_points(rows, a: Analysis) -> dict:
    """``{group: (x [n], value [n])}`` of ``rows`` (one metric) by ``a.group`` (one group, None, without)."""
    groups = rows.groupby(a.group, dropna=False) if a.group else [(None, rows)]
    return {g: (part[a.x].to_numpy(np.float64), part.value.to_numpy(np.float64)) for g, part in groups}


# ----------------------------------------------------------------------------- command line



__all__ = ["baseline_report", "fit_report", "markdown_table", "paired_report", "points_floor_report", "points_report",
           "write_report"]
