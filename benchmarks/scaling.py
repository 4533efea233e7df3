"""Time the 4,500-start Chinchilla fit (jaxneg.scaling) and, when the reference data is beside the
project, compare it with Besiroglu et al.'s refit of Hoffmann et al.'s approach 3.

    python benchmarks/scaling.py [--reference ../shared/data/chinchilla_extracted.csv]

The reference CSV is read in place (it is not part of the project). Prints JSON.
"""

import argparse
import json
import os
import time

import numpy as np

from jaxneg import scaling

BESIROGLU = {"E": 1.8172, "A": 482.01, "alpha": 0.3478, "B": 2085.43, "beta": 0.3658}


def timed(data, y):
    scaling.fit("chinchilla", data, y)  # compile
    t = time.perf_counter()
    f = scaling.fit("chinchilla", data, y)
    return f, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                        "chinchilla_extracted.csv"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    N, D = 10 ** rng.uniform(7, 10, 250), 10 ** rng.uniform(9, 12, 250)
    y = (1.8 + 480 / N ** 0.35 + 2000 / D ** 0.37) * np.exp(0.01 * rng.standard_normal(250))
    _, seconds = timed({"N": N, "D": D}, y)
    out = {"synthetic_250_points": {"starts": 4500, "seconds": seconds}}
    if os.path.exists(args.reference):
        import pandas as pd

        df = pd.read_csv(args.reference)
        N = df.model_size.values
        data, y = {"N": N, "D": df.training_flop.values / (6 * N)}, df.loss.values
        f, seconds = timed(data, y)
        import jax.numpy as jnp

        with __import__("jax").enable_x64(True):
            r = scaling.CHINCHILLA.log_predict({k: jnp.asarray(v) for k, v in {
                "e": np.log(BESIROGLU["E"]), "a": np.log(BESIROGLU["A"]), "b": np.log(BESIROGLU["B"]),
                "alpha": BESIROGLU["alpha"], "beta": BESIROGLU["beta"]}.items()},
                {k: jnp.asarray(v) for k, v in data.items()}) - np.log(y)
            theirs = float(jnp.sum(scaling._huber(r, 1e-3)))
        out["chinchilla_extracted"] = {"points": len(y), "seconds": seconds, "ours": f.params,
                                       "ours_objective": f.objective, "besiroglu": BESIROGLU,
                                       "besiroglu_objective_on_this_data": theirs}
    print(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
