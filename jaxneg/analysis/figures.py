"""The figures of :mod:`jaxneg.analysis.fits`: :func:`plot_fits` (points, law where the data support it, band,
extrapolation, baselines, control), :func:`plot_points` (no law) and the figure file names. No statistics of
their own, no Markdown."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from jaxneg.analysis.fits import LAW_LEVEL, SATURATION_LEVEL, Analysis, GroupFit, law_text, plain

def plot_fits(fits: Sequence[GroupFit], *, xlabel: str = "x", ylabel: str | None = None, group_label: str = "",
              extrapolate: float = 2.0, ax=None, title: str | None = None, baselines: Mapping[str, float] | None = None,
              control: Mapping[str, float] | None = None):
    """Data points, fitted curve and bootstrap band per group, on a log ``x`` axis.

    A group's curve and band are drawn only where its law beats a constant (:meth:`GroupFit.law_test`);
    otherwise its points alone (the legend says "no law"). ``control`` (``{label: value}``: the mean of the
    control runs, e.g. k = 0) is drawn as a grey horizontal line. The legend sits outside the axes.

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

        fig = Figure(figsize=(7.2, 6.0), layout="constrained")
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
        if not gf.law_test()["supported"]:
            ax.scatter([], [], color=c, s=18, label=f"{name}: no law")
            continue
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
    _reference_lines(ax, baselines, control)
    handles, labels = ax.get_legend_handles_labels()
    drawn = [gf for gf in fits if gf.law_test()["supported"]]
    if extrapolate > 1 and drawn:
        handles.append(Line2D([], [], color="gray", ls="--"))
        labels.append(f"extrapolation to {extrapolate:g}× the largest {xname}")
    if any(gf.raw_samples is not None for gf in drawn):
        handles.append(Patch(color="gray", alpha=0.15, lw=0))
        labels.append(f"{int(fits[0].level * 100)}% bootstrap band")
    if any(gf.replicates() for gf in fits):
        handles.append(Line2D([], [], color="gray", marker="o", ms=4, lw=1))
        labels.append("mean ± sd over seeds (faint: each seed)")
    if any(gf.candidates is not None for gf in fits):
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="black"))
        labels.append("frontier runs (fitted); faint: the others")
    if any(gf.x.ndim == 1 and (gf.saturation() or (0, 0))[0] < (gf.saturation() or (0, 0))[1] for gf in drawn):
        handles.append(Line2D([], [], color="gray", ls=":"))
        labels.append(f"saturates from here (no larger {xlabel} better, Welch {SATURATION_LEVEL:g})")
    if any(gf.left_out for gf in fits):
        handles.append(Line2D([], [], ls="", marker="x", color="gray"))
        labels.append("below the untrained encoder: not fitted")
    if len(drawn) < len(fits):
        handles.append(Line2D([], [], ls=""))
        labels.append(f"no law drawn: it does not beat a constant\n(F-test, {LAW_LEVEL:g}) or is not identified")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or fits[0].label)
    ax.grid(True, which="both", alpha=0.3)
    _outside_legend(ax, handles, labels)
    if title:
        ax.set_title(title if drawn else f"{fits[0].label}: the runs' points (no law)", fontsize="medium")
    return fig


def plot_points(points: Mapping[Any, tuple], *, xlabel: str = "x", ylabel: str = "y", group_label: str = "",
                title: str | None = None, baselines: Mapping[str, float] | None = None,
                control: Mapping[str, float] | None = None):
    """The runs' points per group (``{group: (x [n], y [n])}``; mean ± sd over runs of one ``x``), with the
    ``baselines`` and the ``control`` as horizontal lines and no law: what a report draws where no law could
    be fitted. Returns a new matplotlib ``Figure``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 6.0), layout="constrained")
    ax = fig.add_subplot()
    _draw_points(ax, points, group_label)
    _reference_lines(ax, baselines, control)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _outside_legend(ax, *ax.get_legend_handles_labels())
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def plot_panels(panels: Mapping[str, Mapping[Any, tuple]], *, xlabel: str = "x", group_label: str = "",
                title: str | None = None, control: Mapping[str, float] | None = None):
    """One panel per metric (``{metric label: {group: (x [n], y [n])}}``), side by side on a shared ``x``: each
    group's runs and their mean ± sd at each ``x``, as in :func:`plot_points`; ``control`` (``{metric label:
    value}``) a grey line in the panels it names. What a report draws beside a fit to show the regime its runs
    trained in (e.g. the negatives' effective number and the share of their softmax mass on same-class keys).
    Returns a new matplotlib ``Figure``."""
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("analysis.plot_panels: panels is empty")
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.6 * cols + 0.6, 3.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes = axes[:len(panels)]
    for ax, (label, points) in zip(axes, panels.items()):
        _draw_points(ax, points, group_label)
        ys = np.concatenate([np.asarray(y, np.float64) for _, y in points.values()])
        ys = ys[np.isfinite(ys)]
        if len(ys) and ys.min() > 0 and ys.max() > 20 * ys.min():  # a count over decades, e.g. effective_negatives
            ax.set_yscale("log")
        if control and label in control:
            ax.axhline(control[label], color="gray", ls="--", lw=1.5, label="control", zorder=1)
        ax.set_xlabel(xlabel)
        ax.set_title(label, fontsize="medium")
    handles = {}
    for ax in axes:  # one legend for every panel, each name once
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(list(handles.values()), list(handles), fontsize="small", loc="outside lower center",
               ncol=min(len(handles), 4))
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def _draw_points(ax, points: Mapping[Any, tuple], group_label: str) -> None:
    """Each group's runs (faint) and their mean ± sd at each ``x``; a log ``x`` axis when every ``x`` > 0."""
    for i, (g, (x, y)) in enumerate(points.items()):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        xs = np.unique(x)
        mean = np.array([y[x == v].mean() for v in xs])
        sd = np.array([y[x == v].std(ddof=1) if (x == v).sum() > 1 else 0.0 for v in xs])
        name = "runs" if g is None else f"{group_label or 'group'}={plain(g)}"
        ax.scatter(x, y, color=f"C{i % 10}", s=10, alpha=0.35)
        ax.errorbar(xs, mean, yerr=sd, color=f"C{i % 10}", fmt="o", ms=4, capsize=3, lw=1, label=name)
    if all(np.all(np.asarray(x)[np.isfinite(np.asarray(x, np.float64))] > 0) for x, _ in points.values()):
        ax.set_xscale("log", base=2)
    ax.grid(True, which="both", alpha=0.3)


def _reference_lines(ax, baselines, control) -> None:
    for j, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color="black", ls=(":", "-.", "--")[j % 3], lw=1.2, label=f"{name}: {value:.3g}", zorder=1)
    for name, value in (control or {}).items():
        ax.axhline(value, color="gray", ls="--", lw=1.5, label=f"{name}: {value:.3g}", zorder=1)


def _outside_legend(ax, handles, labels) -> None:
    """The legend below the axes, off the data, in two columns."""
    ax.legend(handles, labels, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
              borderaxespad=0.0)




def file_stem(text: str) -> str:
    """``text`` as a file name: characters other than letters, digits and ``._+-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", text)


def plot_name(a: Analysis) -> str:
    """The PNG of an analysis: ``knn_accuracy_error_vs_batch_size.png`` (``_error`` for ``complement``)."""
    x = a.x if isinstance(a.x, str) else "_".join(a.x)
    return file_stem(a.y.split("/")[-1] + ("_error" if a.complement else "") + "_vs_" + x.split(".")[-1]) + ".png"



__all__ = ["file_stem", "plot_fits", "plot_name", "plot_panels", "plot_points"]
