"""Hoffmann et al.'s three approaches on a table of (model size, training FLOP, final loss) runs.

    python benchmarks/scaling_approaches.py --csv ../shared/data/chinchilla_extracted.csv

Estimates the exponent ``a`` of ``N_opt ~ C^a`` three ways (with ``D = C / 6N``):

1. frontier: the Pareto set of loss against compute (``scaling.frontier``), then ``log N`` against
   ``log C`` on it by least squares (``fit("pure_power", loss="mse_log")``);
2. IsoFLOP (``scaling.isoflop``): each run is assigned to the nearest of the paper's nine IsoFLOP
   budgets (6e18 ... 3e21) if within ``--snap`` decades of it; budgets with fewer than 3 distinct
   sizes are dropped; bootstrap over runs within budgets;
3. parametric (``scaling.fit("chinchilla")`` from the 4,500-start grid + ``scaling.compute_optimal``),
   bootstrap over runs.

The CSV is read in place (reference data, not part of the project). Prints JSON.
"""

import argparse
import json
import time

import jax
import numpy as np
import pandas as pd

from jaxneg import scaling

BUDGETS = np.array([6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21])  # Hoffmann et al. 2022, Figure 3
PAPER = {"approach 1 (Hoffmann et al.)": 0.50, "approach 2 (Hoffmann et al.)": 0.49,
         "approach 3 (Hoffmann et al.)": 0.46, "approach 3 (Besiroglu et al. refit)": 0.514}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--snap", type=float, default=0.1, help="max |log10 C - log10 budget| to join a budget")
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args()
    df = pd.read_csv(args.csv)
    N, C, L = df.model_size.to_numpy(), df.training_flop.to_numpy(), df.loss.to_numpy()
    D = C / (6 * N)
    out = {"runs": len(df), "paper": PAPER}

    on = scaling.frontier(C, L)
    f1 = scaling.fit("pure_power", {"x": C[on]}, N[on], loss="mse_log")
    out["approach 1"] = {"a": -f1.params["alpha"], "frontier_runs": int(on.sum())}

    dist = np.abs(np.log10(C)[:, None] - np.log10(BUDGETS)[None, :])
    nearest, close = dist.argmin(1), dist.min(1) <= args.snap
    used = [b for b in range(len(BUDGETS))
            if len(np.unique(N[close & (nearest == b)])) >= 3]
    sel = close & np.isin(nearest, used)
    t = time.perf_counter()
    iso = scaling.isoflop(N[sel], D[sel], L[sel], flops=BUDGETS[nearest[sel]], n_bootstrap=args.bootstrap)
    out["approach 2"] = {"a": iso.a, "interval": iso.intervals["a"], "budgets": [float(b) for b in iso.budgets],
                         "runs_per_budget": iso.counts.tolist(), "runs_used": int(sel.sum()),
                         "seconds": time.perf_counter() - t}

    t = time.perf_counter()
    f3 = scaling.fit("chinchilla", {"N": N, "D": D}, L)
    boot = f3.bootstrap(args.bootstrap, jax.random.key(0))
    al = scaling.compute_optimal(f3, BUDGETS, bootstrap=boot)
    out["approach 3"] = {"a": al.a, "interval": al.intervals["a"], "params": f3.params,
                         "seconds": time.perf_counter() - t}
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
