r"""The files of a run directory and of a sweep directory: their names, their layout and their I/O, in one place.

``experiments.train`` writes a run directory, ``experiments.sweep`` a sweep of them,
:mod:`jaxneg.results` reads both (it works on a directory copied off a cluster, without
``experiments``) and :mod:`jaxneg.analysis` writes the fits and the report. Every other
module names these files through the constants below::

    <sweep>/                       a sweep directory (experiments.sweep --workdir)
        sweep.json       SWEEP     its points (name -> overrides), base config and analyses
        summary.json     SUMMARY   finished / failed / skipped runs of the last launch
        results.csv      RESULTS   one row per finished run and metric (jaxneg.results.load)
        fits.json        FITS      one law per group of each analysis, with bootstrap intervals
        baselines.json   BASELINES raw-input and untrained-encoder metrics of each dataset's protocol
        report.md        REPORT    the run table, the fitted parameters and the figures (*.png)
        lock             LOCK      the launch that holds the directory (experiments.stopping)
        submitit/        SUBMITIT  the SLURM backend's job folders
        runs/            RUNS      one run directory per point:
            <name>/                a run directory (experiments.train --workdir)
                config.json    CONFIG       the run's config (written first; a different config is refused)
                metrics.jsonl  METRICS      one JSON object per logged step or evaluation, rewound on resume
                log.txt        LOG          progress lines (start or resume, logged steps, final metrics; in a
                                            sweep also the process' warnings, in the first member's file
                                            of each program)
                tb/            TENSORBOARD  TensorBoard event files (tensorboardX)
                checkpoints/   CHECKPOINTS  orbax steps; checkpoints/quarantine/ (QUARANTINE) for bad ones
                manifests/     MANIFESTS    size and SHA-256 of every file of each checkpoint step
                result.json    RESULT       the final result (its presence means "finished")
                failed.json    FAILED       a non-finite loss stopped the run
                error.txt      ERROR        the run raised (the traceback)
                lock           LOCK         the process that trains it

JSON files are written atomically (a temporary file, then a rename), so a crash never
leaves half a file.
"""

from __future__ import annotations

import json
import os

# a run directory
CONFIG, METRICS, RESULT, FAILED, ERROR, LOG = "config.json", "metrics.jsonl", "result.json", "failed.json", "error.txt", "log.txt"
CHECKPOINTS, MANIFESTS, QUARANTINE, TENSORBOARD = "checkpoints", "manifests", "quarantine", "tb"
# a sweep directory
SWEEP, SUMMARY, RESULTS, FITS, REPORT, RUNS, SUBMITIT = ("sweep.json", "summary.json", "results.csv", "fits.json",
                                                         "report.md", "runs", "submitit")
BASELINES = "baselines.json"
# both
LOCK = "lock"


def _default(v):
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (NumPy / JAX scalars and arrays become numbers / lists)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_default)
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def flat(d: dict, prefix: str = "") -> dict:
    """``{"loss": {"name": "x"}}`` -> ``{"loss.name": "x"}``; lists become tuples, so every value is hashable."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = _hashable(v)
    return out


def _hashable(v):
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


def config_diff(old: dict, new: dict) -> list[str]:
    """The dotted fields whose values differ between two configs (as JSON dicts)."""
    a, b = flat(old), flat(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def status(run_dir: str) -> str:
    """``"finished"``, ``"failed"`` or ``"running"`` (started, or interrupted)."""
    if os.path.exists(os.path.join(run_dir, RESULT)):
        return "finished"
    if any(os.path.exists(os.path.join(run_dir, f)) for f in (FAILED, ERROR)):
        return "failed"
    return "running"


def find_runs(directory: str) -> list[str]:
    """Every run directory (one holding ``config.json``) under ``directory``, sorted."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"results: directory {directory!r} does not exist")
    found = []
    for root, dirs, files in os.walk(directory):
        if CONFIG in files:
            found.append(root)
            dirs[:] = []  # a run's own subdirectories (checkpoints, tb) hold no runs
        else:
            dirs.sort()
    return sorted(found)


def metric_rows(run_dir: str):
    """The rows of ``metrics.jsonl`` (a line being written, or torn, ends the list)."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                return


def logged_step(run_dir: str) -> int:
    """The last step a run logged (rewound to its checkpoint on resume); 0 if none."""
    return max((int(r.get("step", 0)) for r in metric_rows(run_dir)), default=0)


def last_loss(run_dir: str):
    """The last logged training loss, or None."""
    last = None
    for r in metric_rows(run_dir):
        if "loss" in r:
            last = r["loss"]
    return last


def truncate_metrics(run_dir: str, last_step: int) -> None:
    """Drop logged lines after ``last_step`` (a resumed run logs them again) and any torn last line."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return
    keep = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= last_step:
                    keep.append(line)
            except (ValueError, KeyError):
                break  # a torn last line
    with open(path + ".tmp", "w") as f:
        f.writelines(keep)
    os.replace(path + ".tmp", path)


def checkpointed_step(run_dir: str) -> int:
    """The newest checkpoint step on disk (not verified), 0 if none."""
    d = os.path.join(run_dir, CHECKPOINTS)
    steps = [int(n) for n in os.listdir(d) if n.isdigit()] if os.path.isdir(d) else []
    return max(steps, default=0)
