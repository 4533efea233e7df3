"""Wall time of one sweep run vectorised (members of one program) against ``--vectorize=false``.

::

    python benchmarks/vectorized_sweep.py                       # the default grid below, 2 CPU cores
    python benchmarks/vectorized_sweep.py --arg "seeds=3,steps=400"   # the whole quickstart grid
    python benchmarks/vectorized_sweep.py --modes vectorized    # one mode only
    python benchmarks/vectorized_sweep.py --modes vectorized,vmapped   # the platform default against
                                                                # all members in one vmapped step

Modes: ``vectorized`` (the default: one program per shape, its members ``members_per_step`` at a
time, i.e. one at a time on CPU and all together on an accelerator), ``one_per_program``
(``--vectorize=false``: a program per point) and ``vmapped`` (one program per shape, all members
in one vmapped step, ``--members_per_step=1000``).

Each mode runs the same sweep (``experiments/configs/quickstart.py:<arg>``) from an empty
directory in a fresh process, with the persistent compilation cache off
(``JAXNEG_COMPILATION_CACHE=0``) so every mode compiles everything, one program at a time
(``--workers 1``). Each mode's figures are printed and saved as soon as it finishes (a timeout
keeps what was measured): the wall time of the whole command, and from ``summary.json`` the
training phase and the time account (compile, steps, evaluation, checkpoints, data, analysis).
With both modes: their ratios, and the largest difference of each metric between a point trained
as a member and alone. Results go to ``benchmarks/results_vectorized_sweep_<backend>.json``.
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
MODES = {"vectorized": ["--vectorize=true"], "one_per_program": ["--vectorize=false"],
         "vmapped": ["--vectorize=true", "--members_per_step=1000"]}


def run(arg: str, flags: list, workdir: str) -> float:
    env = dict(os.environ, JAXNEG_COMPILATION_CACHE="0")
    cmd = [sys.executable, "-m", "experiments.sweep", f"--config=experiments/configs/quickstart.py:{arg}",
           f"--workdir={workdir}", *flags, "--progress=false"]
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
    p.add_argument("--arg", default="seeds=2,steps=100,batches=16-32-64-128,negatives=",
                   help="quickstart.py argument (the grid)")
    p.add_argument("--modes", default="vectorized,one_per_program", help=f"comma-separated, of {list(MODES)}")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results_vectorized_sweep_<backend>.json)")
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        p.error(f"--modes must be a comma-separated subset of {list(MODES)}, got {args.modes!r}")
    import jax

    result = {"arg": args.arg, "backend": jax.default_backend(), "cpu_count": os.cpu_count(), "modes": {}}
    out = args.out or os.path.join(ROOT, "benchmarks", f"results_vectorized_sweep_{result['backend']}.json")

    def save():
        print(json.dumps(result, indent=2), flush=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=2)

    with tempfile.TemporaryDirectory() as tmp:
        # prepare the data once, outside the timings
        subprocess.run([sys.executable, "-c", "from jaxneg import data; data.load('mnist1d', 'train')"],
                       cwd=ROOT, check=True, capture_output=True)
        found = {}
        for mode in modes:
            d = os.path.join(tmp, mode)
            wall = run(args.arg, MODES[mode], d)
            summary = json.load(open(os.path.join(d, "summary.json")))
            found[mode] = metrics(d)
            result["runs"] = len(found[mode])
            result["modes"][mode] = {"wall_s": round(wall, 1), "training_phase_s": round(summary["seconds"], 1),
                                     "time_account_s": {k: round(v, 1) for k, v in summary["time_account"].items()}}
            save()  # each mode's figures as soon as it has them
        if {"vectorized", "one_per_program"} <= set(found):
            a, b = found["vectorized"], found["one_per_program"]
            vec, one = result["modes"]["vectorized"], result["modes"]["one_per_program"]
            result["ratio"] = round(vec["wall_s"] / one["wall_s"], 3)
            result["training_phase_ratio"] = round(vec["training_phase_s"] / one["training_phase_s"], 3)
            # the same point trained as a member and alone differs only by float reassociation, amplified by
            # training: the largest difference of each metric over the runs (absolute, and relative to its value)
            diff = {k: (max(abs(a[r][k] - b[r][k]) for r in a),
                        max(abs(a[r][k] - b[r][k]) / max(abs(b[r][k]), 1e-12) for r in a)) for k in next(iter(a.values()))}
            result["metric_difference_abs_rel"] = {k: [round(x, 4), round(y, 4)] for k, (x, y) in diff.items()}
            save()


if __name__ == "__main__":
    main()
