"""``python -m jaxneg.analysis``: fit any result table from the shell, through the sweeps' report writer."""

from __future__ import annotations

import json
import os
import sys

from jaxneg import rundir, scaling
from jaxneg.analysis.fits import Analysis
from jaxneg.analysis.report import write_report

FITS = rundir.FITS

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



__all__ = ["main"]
