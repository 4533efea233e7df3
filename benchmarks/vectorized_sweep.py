"""Wall time of one sweep run vectorised (members of one program) against ``--vectorize=false``.

::

    python benchmarks/vectorized_sweep.py                       # the default grid below, 2 CPU cores
    python benchmarks/vectorized_sweep.py --arg "seeds=3,steps=400"   # the whole quickstart grid

Each mode runs the same sweep (``experiments/configs/quickstart.py:<arg>``) from an empty
directory in a fresh process, with the persistent compilation cache off
(``JAXNEG_COMPILATION_CACHE=0``) so both compile everything, one run at a time
(``--workers 1``). Reports the wall time of each (the whole command, and
the training phase alone from ``summary.json``: the analysis is the same in both), their ratio,
and the largest difference of each metric between a point trained as a member and alone. Results go to ``benchmarks/results_vectorized_sweep_<backend>.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from jaxneg import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(arg: str, vectorize: bool, workdir: str) -> float:
    env = dict(os.environ, JAXNEG_COMPILATION_CACHE="0")
    cmd = [sys.executable, "-m", "experiments.sweep", f"--config=experiments/configs/quickstart.py:{arg}",
           f"--workdir={workdir}", f"--vectorize={str(vectorize).lower()}", "--progress=false"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def metrics(workdir: str) -> dict:
    out = {}
    for name in sorted(os.listdir(os.path.join(workdir, rundir.RUNS))):
        with open(os.path.join(workdir, rundir.RUNS, name, rundir.RESULT)) as f:
            out[name] = json.load(f)["eval"]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arg", default="seeds=2,steps=100,batches=16-32-64-128,queues=",
                   help="quickstart.py argument (the grid)")
    args = p.parse_args()
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        # prepare the data once, outside the timings
        subprocess.run([sys.executable, "-c", "from jaxneg import data; data.load('mnist1d', 'train')"],
                       cwd=ROOT, check=True, capture_output=True)
        t_vec = run(args.arg, True, os.path.join(tmp, "vectorized"))
        t_one = run(args.arg, False, os.path.join(tmp, "one_per_program"))
        a, b = metrics(os.path.join(tmp, "vectorized")), metrics(os.path.join(tmp, "one_per_program"))
        run_vec, run_one = (json.load(open(os.path.join(tmp, m, "summary.json")))["seconds"]
                            for m in ("vectorized", "one_per_program"))
        # the same point trained as a member and alone differs only by float reassociation, amplified by
        # training: the largest difference of each metric over the runs (absolute, and relative to its value)
        diff = {k: (max(abs(a[r][k] - b[r][k]) for r in a),
                    max(abs(a[r][k] - b[r][k]) / max(abs(b[r][k]), 1e-12) for r in a)) for k in next(iter(a.values()))}
    result = {"arg": args.arg, "backend": jax.default_backend(), "cpu_count": os.cpu_count(), "runs": len(a),
              "vectorized_s": round(t_vec, 1), "one_per_program_s": round(t_one, 1),
              "ratio": round(t_vec / t_one, 3),
              "training_phase_s": {"vectorized": round(run_vec, 1), "one_per_program": round(run_one, 1)},
              "training_phase_ratio": round(run_vec / run_one, 3),
              "metric_difference_abs_rel": {k: [round(x, 4), round(y, 4)] for k, (x, y) in diff.items()}}
    print(json.dumps(result, indent=2))
    with open(os.path.join(ROOT, "benchmarks", f"results_vectorized_sweep_{result['backend']}.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
