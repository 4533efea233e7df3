"""Do a sweep's fits depend on the order of its rows? Refit each curve of a ``results.csv`` in shuffled row orders.

::

    python benchmarks/fit_order.py --csv runs/quickstart/results.csv [--loss mse_log] [--orders 5]

For the main job's curves (kNN and probe error against the batch size per temperature; kNN error against
the negatives per anchor per source), the table is fitted ``--orders`` times, each time with its rows in
another random order, and the spread of every parameter and of the holdout ARE is printed: 0 means the fit
is a function of the data alone. Also the near-optimal range of each parameter (the starts that end within
1e-4 of the best objective), where the fitting code reports one. One JSON line per curve.
"""

import argparse
import json

import numpy as np
import pandas as pd

from jaxneg import analysis, results

CURVES = [("batch_size", "eval/knn_accuracy", "loss.temperature", "negatives_from == 'batch'"),
          ("batch_size", "eval/linear_probe_accuracy", "loss.temperature", "negatives_from == 'batch'"),
          ("negatives_per_anchor", "eval/knn_accuracy", "negatives_from", "negatives_from != 'batch'")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--csv", required=True)
    p.add_argument("--loss", default="mse_log")
    p.add_argument("--orders", type=int, default=5)
    args = p.parse_args()
    df = pd.read_csv(args.csv)
    for x, y, group, where in CURVES:
        if x not in df.columns or group not in df.columns:
            continue
        part = results.where(df, where)
        fits = [analysis.fit_groups(part.sample(frac=1.0, random_state=o).reset_index(drop=True), x=x, y=y,
                                    group=group, complement=True, n_bootstrap=0, loss=args.loss)
                for o in range(args.orders)]
        for i, gf in enumerate(fits[0]):
            params = {k: [f[i].fit.params[k] for f in fits] for k in gf.fit.params}
            ares = [f[i].holdout_are for f in fits]
            near = getattr(gf.fit, "near_optimal", None)
            print(json.dumps({"curve": f"1 - {y} vs {x}", "group": analysis.plain(gf.group), "loss": args.loss,
                              "params": {k: round(float(np.median(v)), 4) for k, v in params.items()},
                              "spread_over_orders": {k: float(np.ptp(v)) for k, v in params.items()},
                              "holdout_are": None if ares[0] is None else [round(a, 4) for a in ares],
                              "near_optimal": None if near is None else {k: [round(v, 4) for v in r]
                                                                         for k, r in near.items()}}))


if __name__ == "__main__":
    main()
