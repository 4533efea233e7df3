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
compute-optimal allocation), :mod:`jaxneg.results` the tables; this package joins them, one job a
module: :mod:`~jaxneg.analysis.fits` (statistics), :mod:`~jaxneg.analysis.figures` (plots),
:mod:`~jaxneg.analysis.report` (Markdown and the report writer), :mod:`~jaxneg.analysis.cli` (the
command line).
"""

from jaxneg.analysis.cli import main
from jaxneg.analysis.figures import file_stem, plot_fits, plot_name
from jaxneg.analysis.fits import (FLOOR, RESIDUAL_FACTOR, SATURATION_LEVEL, Analysis, GroupFit, fit_groups, law_text,
                                  paired_differences, plain)
from jaxneg.analysis.report import (FITS, REPORT, baseline_report, fit_report, markdown_table, paired_report,
                                    points_floor_report, points_report, write_report)

__all__ = ["Analysis", "FITS", "FLOOR", "GroupFit", "REPORT", "RESIDUAL_FACTOR", "SATURATION_LEVEL", "baseline_report",
           "file_stem", "fit_groups", "fit_report", "law_text", "main", "markdown_table", "paired_differences",
           "paired_report", "plain", "plot_fits", "plot_name", "points_floor_report", "points_report", "write_report"]
