r"""Sweeps over config fields: ``python -m experiments.sweep --config C[:arg] --workdir DIR``.

::

    python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/quickstart
    python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/qs --workers 2
    python -m experiments.sweep --config my_sweep.py --workdir /scratch/s --backend slurm \
        --slurm "slurm_partition='gpu',gpus_per_node=1,timeout_min=120"

A sweep config is a module whose ``get_config(arg)`` returns a :class:`Sweep`: a base run
config (``experiments.train``'s schema), a ``grid`` ``{field: values}`` whose Cartesian
product is swept, ``zip`` groups ``{field: values, other: values}`` whose fields vary
together (batch size with the step count that keeps the epochs fixed, say), further
:class:`Part` s (more points on a changed base), derived ``columns`` (Python expressions of
config fields) and the :class:`Analysis` fits to make at the end (each on the runs its
``where`` expression selects). Every point is expanded and validated before
the first run starts; a bad field or value fails naming the point.

``DIR`` holds ``sweep.json``, one run directory per point under ``runs/``, ``results.csv``,
``fits.json``, a PNG per analysis, ``report.md`` and ``summary.json`` (the layout:
:mod:`jaxneg.rundir`).

Programs: points whose configs differ only in :data:`experiments.train.MEMBER_FIELDS` (seed,
temperature, learning rate, weight decay, float loss keywords, MoCo queue length) run as the
members of one compiled program (:func:`plan`; ``--max_members`` caps it, ``--vectorize=false``
runs one point per program). Each member keeps its own run directory.

Backends: ``local`` runs programs one after another in this process (``--workers 1``) or
in N worker processes (each run's lines in ``runs/<name>/log.txt``); ``slurm`` submits
one job per program through ``submitit`` (``--cluster local`` runs those jobs as local
processes, for testing). Launching the same sweep again skips finished runs, resumes
interrupted ones from their last checkpoint and retries failed ones; the analysis is
rewritten from every finished run. Datasets are prepared once, here, before any worker
starts, so workers never race to write the same tfds files. One launch holds ``DIR`` at a time
(a second is refused, naming the first); SIGINT (Ctrl-C) and SIGTERM stop the launcher and its
workers within seconds with exit status 130 / 143, finished runs and checkpoints kept
(:mod:`experiments.stopping`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from typing import Mapping, Sequence

import ml_collections

from experiments import config_lib, stopping
from jaxneg import analysis, rundir

BACKENDS = ("local", "slurm")


Analysis = analysis.Analysis  # sweep configs build experiments.sweep.Analysis(x=..., y=...)


@dataclasses.dataclass
class Part:
    """More points: the base config changed by ``overrides``, then its own ``grid`` × ``zip``;
    their names start with ``label``."""

    label: str
    overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)
    grid: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    zip: Sequence[Mapping[str, Sequence]] | Mapping[str, Sequence] = ()


@dataclasses.dataclass
class Sweep:
    """What to sweep: ``base`` run config, ``grid`` axes, ``zip`` groups, more ``parts``, derived
    ``columns`` (``{name: Python expression of config fields}``, for analyses) and ``analyses``."""

    base: ml_collections.ConfigDict
    grid: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    zip: Sequence[Mapping[str, Sequence]] | Mapping[str, Sequence] = ()
    analyses: Sequence[Analysis] = ()
    description: str = ""
    parts: Sequence[Part] = ()
    columns: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Point:
    name: str                                  # run directory name, from the swept values
    overrides: dict                            # field -> value
    config: ml_collections.ConfigDict


# ----------------------------------------------------------------------------- expansion


get_field = config_lib.get_field


def _axes(sweep) -> list[list[dict]]:
    axes, seen = [], set()
    groups = [g for g in ([sweep.zip] if isinstance(sweep.zip, Mapping) else list(sweep.zip)) if g]
    for field, values in sweep.grid.items():
        axes.append([{field: v} for v in _values(f"grid[{field!r}]", values)])
    for i, group in enumerate(groups):
        lengths = {f: len(_values(f"zip[{i}][{f!r}]", v)) for f, v in group.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"sweep: the fields of zip group {i} must have equal lengths, got {lengths}")
        axes.append([dict(zip(group, vals)) for vals in zip(*group.values())])
    for axis in axes:
        for field in axis[0]:
            if field in seen:
                raise ValueError(f"sweep: field {field!r} is swept twice (grid and zip axes must be disjoint)")
            seen.add(field)
    return axes


def _values(where, values):
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"sweep: {where} must be a non-empty list of values, got {values!r}")
    return values


def _fmt(v) -> str:
    if isinstance(v, float):
        text = f"{v:g}"
    elif isinstance(v, (tuple, list)):
        text = "x".join(_fmt(x) for x in v)
    elif isinstance(v, Mapping) or hasattr(v, "to_dict"):
        d = v.to_dict() if hasattr(v, "to_dict") else dict(v)
        text = "+".join(f"{k}-{_fmt(x)}" for k, x in sorted(d.items())) or "none"
    else:
        text = str(v) if v != "" else "none"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", text)


def _short_names(fields):
    last = [f.split(".")[-1] for f in fields]
    return {f: (s if last.count(s) == 1 else f) for f, s in zip(fields, last)}


def expand(sweep: Sweep, *, num_devices: int | None = None) -> list[Point]:
    """Every point of ``sweep`` (grid × zip groups), each validated; names are unique.

    ``num_devices``: the device count to validate batch divisibility against (default the
    point's ``num_devices``, or 1 when that is 0 = all; ``experiments.train`` checks again).
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep: get_config must return an experiments.sweep.Sweep, got {type(sweep).__name__}")
    parts = list(sweep.parts)
    if sweep.grid or sweep.zip or not parts:
        parts.insert(0, Part("", {}, sweep.grid, sweep.zip))
    points, names = [], {}
    for part in parts:
        if not isinstance(part, Part):
            raise TypeError(f"sweep: parts must be experiments.sweep.Part, got {type(part).__name__}")
        points += _expand_part(sweep, part, names, num_devices)
    return points


def _expand_part(sweep: Sweep, part: Part, names: dict, num_devices) -> list[Point]:
    axes = _axes(part)
    fields = [f for axis in axes for f in axis[0]]
    short = _short_names(fields)
    points = []
    for combo in itertools.product(*axes):
        overrides = {**part.overrides, **{k: v for piece in combo for k, v in piece.items()}}
        name = ",".join([part.label] * bool(part.label) + [f"{short[f]}={_fmt(overrides[f])}" for f in fields]) or "run"
        config = copy.deepcopy(sweep.base)
        for field, value in overrides.items():
            config_lib.set_field(config, field, value, f"sweep point {name}")
        config.progress = False
        try:
            config_lib.validate(config, num_devices or max(1, config.num_devices))
        except ValueError as e:
            raise ValueError(f"sweep point {name}: {e}") from None
        if name in names:
            raise ValueError(f"sweep: points {names[name]} and {overrides} have the same name {name!r}")
        names[name] = overrides
        points.append(Point(name, overrides, config))
    return points


def load_sweep(spec: str) -> Sweep:
    """Import ``path/to/config.py[:arg]`` and return its ``get_config(arg)``, which must be a :class:`Sweep`."""
    obj = config_lib.load_file(spec)
    if isinstance(obj, ml_collections.ConfigDict):
        raise config_lib.ConfigError(f"--config {spec} is a run config, not a sweep; run it with python -m "
                                     f"experiments.train --config {spec} --workdir DIR, or wrap it in "
                                     f"experiments.sweep.Sweep(base=...)")
    if not isinstance(obj, Sweep):
        raise config_lib.ConfigError(f"--config {spec}: get_config must return an experiments.sweep.Sweep, "
                                     f"got {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------- running points


def plan(points, *, vectorize: bool = True, max_members: int = 0) -> list[list[Point]]:
    """The programs that run ``points``: with ``vectorize``, points whose configs differ only in
    :data:`experiments.train.MEMBER_FIELDS` (seed, temperature, learning rate, ...) share one
    (at most ``max_members`` each; 0 = no limit); without, one point per program. Longest first."""
    from experiments import train

    if not vectorize:
        out = [[p] for p in points]
    else:
        groups: dict = {}
        for p in points:
            groups.setdefault(train.group_key(p.config), []).append(p)
        size = max_members or len(points)
        out = [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]
    # longest first (by examples encoded), so parallel workers do not end waiting on one long program
    return sorted(out, key=lambda g: -sum(p.config.steps * p.config.batch_size for p in g))


_TRACING_ERRORS = ("ConcretizationTypeError", "TracerBoolConversionError", "TracerIntegerConversionError",
                   "TracerArrayConversionError")


def run_group(configs, workdirs) -> list[dict]:
    """Train one group (``experiments.train.train_group``); failures are returned, not raised.

    Each member's outcome is ``{"status": "finished", "eval": {...}}`` or ``{"status":
    "failed", "error": "..."}`` (the traceback also goes to its ``error.txt``). A group whose
    loss cannot take a swept keyword as a traced array (Python control flow on it) runs its
    members one by one instead.
    """
    from experiments import train

    for w in workdirs:
        error = os.path.join(w, rundir.ERROR)
        if os.path.exists(error):  # from an earlier attempt
            os.remove(error)
    try:
        results = train.train_group(list(configs), list(workdirs))
    except Exception as e:  # a run's failure must not stop the sweep
        if len(configs) > 1 and type(e).__name__ in _TRACING_ERRORS:
            print(f"sweep: these {len(configs)} points cannot share a program ({type(e).__name__}: a swept loss "
                  f"keyword is used in Python control flow); running them one by one", file=sys.stderr, flush=True)
            return [o for c, w in zip(configs, workdirs) for o in run_group([c], [w])]
        text, out = traceback.format_exc(), []
        for w in workdirs:
            if rundir.status(w) == "finished":  # finished before the failure (an earlier sub-program)
                out.append({"status": "finished", "eval": rundir.read_json(os.path.join(w, rundir.RESULT))["eval"]})
                continue
            os.makedirs(w, exist_ok=True)
            with open(os.path.join(w, rundir.ERROR), "w") as f:
                f.write(text)
            out.append({"status": "failed", "error": f"{type(e).__name__}: {e}"})
        return out
    return [{"status": "finished", "eval": r["eval"]} if r["status"] == "finished" else
            {"status": "failed", "error": f"non-finite loss {r['loss']} at step {r['step']} (failed.json)"}
            for r in results]


@contextlib.contextmanager
def _output_to(path):
    """Send this process's stdout and stderr (file descriptors, so C++ logs too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:  # Python-level streams too, where they are not fds 1 and 2 (pytest, notebooks)
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _worker_init():
    from absl import logging

    stopping.worker_signals()
    logging.set_verbosity(logging.WARNING)
    if os.environ.get("JAXNEG_COMPILATION_CACHE", "0") != "0":  # the command line's cache, inherited
        from experiments import train

        train.enable_compilation_cache()


def _worker_run(configs, workdirs):
    """Run a group with the process' output (warnings, XLA logs) in its first member's ``log.txt``."""
    os.makedirs(workdirs[0], exist_ok=True)
    try:
        with _output_to(os.path.join(workdirs[0], rundir.LOG)):
            return run_group(configs, workdirs)
    except stopping.Stop as stop:
        if multiprocessing.parent_process() is None:  # in the launcher's own process (--workers 1)
            raise
        stopping.exit_worker(stop)


# ----------------------------------------------------------------------------- backends


class _Progress:
    """One bar over the steps of every run of the sweep, fed by polling each run's ``metrics.jsonl``.

    Polling works the same for in-process runs, worker processes and cluster jobs; it moves
    every ``log_every`` steps of a run, and a finished run counts in full.
    """

    def __init__(self, points, run_dir, finished, enabled):
        self.points, self.run_dir, self.bar = points, run_dir, None
        self.done = {p.name: p.config.steps for p in points if p.name in finished}
        self.total = sum(p.config.steps for p in points)
        self.failed = 0
        if not enabled:
            return
        import threading

        from tqdm.auto import tqdm

        self._lock = threading.Lock()  # the poller and the main thread both move the bar

        # the bar keeps the terminal even while in-process runs send fds 1 and 2 to their log.txt
        self.stream = os.fdopen(os.dup(2), "w", buffering=1)
        self.bar = tqdm(total=self.total, initial=sum(self.done.values()), unit="step", dynamic_ncols=True,
                        file=self.stream, desc=f"{len(self.done)}/{len(points)} runs")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(1.0):
            self.refresh()

    def refresh(self):
        if self.bar is None:
            return
        with self._lock:
            steps = sum(self.done.get(p.name, rundir.logged_step(self.run_dir(p))) for p in self.points)
            self.bar.update(steps - self.bar.n)
            self.bar.set_description(f"{len(self.done)}/{len(self.points)} runs"
                                     + (f", {self.failed} failed" if self.failed else ""), refresh=False)

    def finished(self, point, outcome):
        if self.bar is not None:
            with self._lock:
                self.done[point.name] = point.config.steps
                self.failed += outcome["status"] != "finished"
        self.refresh()

    def close(self):
        if self.bar is None:
            return
        self._stop.set()
        self._thread.join()
        self.refresh()
        self.bar.close()
        self.stream.close()


def _group_args(group, run_dir):
    return [p.config for p in group], [run_dir(p) for p in group]


def _record_group(out, group, outcomes, progress):
    for p, o in zip(group, outcomes):
        out[p.name] = o
        progress.finished(p, o)


def _run_local(groups, run_dir, workers, progress):
    out = {}
    if workers == 1:
        for g in groups:
            _record_group(out, g, _worker_run(*_group_args(g, run_dir)), progress)
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    try:
        futures = {pool.submit(_worker_run, *_group_args(g, run_dir)): g for g in groups}
        for fut in cf.as_completed(futures):
            g = futures[fut]
            try:
                outcomes = fut.result()
            except Exception as e:  # the worker process died (killed, out of memory)
                outcomes = [{"status": "failed", "error": f"worker died: {type(e).__name__}: {e}"}] * len(g)
            _record_group(out, g, outcomes, progress)
    except stopping.Stop:  # SIGTERM the workers (they stop at their next bytecode), never wait on their queue
        pool.shutdown(wait=False, cancel_futures=True)
        stopping.stop_processes(mp.active_children())
        raise
    pool.shutdown(wait=True)
    return out


def _run_submitit(groups, run_dir, workdir, cluster, params, progress):
    import submitit

    executor = submitit.AutoExecutor(folder=os.path.join(workdir, rundir.SUBMITIT, "%j"), cluster=cluster)
    if params:
        executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for g in groups:
            jobs.append((g, executor.submit(_worker_run, *_group_args(g, run_dir))))
    by_job = {id(j): g for g, j in jobs}
    out = {}
    try:
        for job in submitit.helpers.as_completed([j for _, j in jobs]):
            g = by_job[id(job)]
            try:
                outcomes = job.result()
            except Exception as e:  # the job itself failed (preempted, timed out, killed)
                outcomes = [{"status": "failed", "error": f"job {job.job_id}: {type(e).__name__}: {e}"}] * len(g)
            _record_group(out, g, outcomes, progress)
    except stopping.Stop:  # the jobs are this launch's: cancel the ones still queued or running
        for _, job in jobs:
            if not job.done():
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
        raise
    return out


def prepare_data(configs) -> None:
    """Prepare each distinct dataset of ``configs`` (tfds array_record files) once, here."""
    from jaxneg import data

    seen = set()
    for c in configs:
        key = (c.data.name, json.dumps(c.data.config.to_dict(), sort_keys=True), c.data.data_dir)
        if key not in seen:
            seen.add(key)
            data.load(c.data.name, c.data.train_split, data_dir=c.data.data_dir or None,
                      config=c.data.config.to_dict(), max_examples=1)


def _say(message: str) -> None:
    print(f"sweep: {message}", file=sys.stderr, flush=True)


def _record(sweep: Sweep, points, workdir: str, extend: bool) -> list[dict]:
    """The points ``sweep.json`` will list: these, or with ``extend`` the union with the recorded ones.

    A directory that holds a sweep of another base config, or of other points, is refused
    (naming the difference) unless ``extend`` adds points to the same base.
    """
    from experiments import train

    new = [{"name": p.name, "overrides": p.overrides} for p in points]
    path = os.path.join(workdir, rundir.SWEEP)
    if not os.path.exists(path):
        return new
    old = rundir.read_json(path)
    base = train.config_json(sweep.base)
    a, b = rundir.flat(old["base"]), rundir.flat(base)
    diff = rundir.config_diff(old["base"], base)
    if diff:
        raise config_lib.ConfigError(
            f"sweep: {workdir} holds a sweep of another base config (fields {diff}: "
            + ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:4])
            + "); use another --workdir")
    old_names = [q["name"] for q in old["points"]]
    names = [q["name"] for q in new]
    added = [n for n in names if n not in old_names]
    missing = [n for n in old_names if n not in names]
    if (added or missing) and not extend:
        raise config_lib.ConfigError(
            f"sweep: {workdir} holds a sweep of {len(old_names)} points and this config has {len(names)}"
            + (f"; it adds {len(added)}: {', '.join(added[:6])}{' ...' if len(added) > 6 else ''}" if added else "")
            + (f"; it lacks {len(missing)}: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"
               if missing else "")
            + ". Relaunch with the config (and arg) it was started with, pass --extend to add these points to "
              "it (the report then covers every point), or use another --workdir")
    return old["points"] + [q for q in new if q["name"] in added]


def run(sweep: Sweep, workdir: str, *, backend: str = "local", workers: int = 1, cluster: str = "slurm",
        slurm: Mapping | None = None, progress: bool = True, analyze_only: bool = False,
        extend: bool = False, vectorize: bool = True, max_members: int = 0) -> dict:
    """Run every unfinished point of ``sweep`` under ``workdir``, then write the analysis.

    Everything is checked before the first run starts, and raises
    :class:`~experiments.config_lib.ConfigError`: the points, the analyses, a run directory
    of another config, and a directory of another sweep (``extend=True`` allows adding
    points to it). Returns the summary (also ``workdir/summary.json``): ``finished``,
    ``skipped`` (finished before this launch), ``failed`` ({name: error}) and ``report``.
    Raises :class:`experiments.stopping.Busy` when another launch holds ``workdir``.
    """
    if backend not in BACKENDS:
        raise config_lib.ConfigError(f"sweep: backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(workers, int) or workers < 1:
        raise config_lib.ConfigError(f"sweep: workers must be an integer >= 1, got {workers!r}")
    try:
        points = expand(sweep)
        for a in sweep.analyses:
            _check_analysis(a, points, sweep)
    except config_lib.ConfigError:
        raise
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
    workdir = os.path.abspath(workdir)
    with stopping.Lock(workdir, "experiments.sweep"):  # a second launch into workdir fails here, naming this one
        return _launch(sweep, points, workdir, backend=backend, workers=workers, cluster=cluster, slurm=slurm,
                       progress=progress, analyze_only=analyze_only, extend=extend, vectorize=vectorize,
                       max_members=max_members)


def _launch(sweep, points, workdir, *, backend, workers, cluster, slurm, progress, analyze_only, extend, vectorize,
            max_members) -> dict:
    from experiments import train

    runs_dir = os.path.join(workdir, rundir.RUNS)
    run_dir = lambda p: os.path.join(runs_dir, p.name)
    recorded = _record(sweep, points, workdir, extend)
    done, resumable = [], {}
    for p in points:  # a run directory of another config is an error before anything runs
        cfg = os.path.join(run_dir(p), rundir.CONFIG)
        if os.path.exists(cfg):
            try:
                train.check_workdir(run_dir(p), train.config_json(p.config))
            except config_lib.ConfigError as e:
                raise config_lib.ConfigError(f"sweep point {p.name}: {e} (or delete that run)") from None
        if rundir.status(run_dir(p)) == "finished":
            done.append(p.name)
        elif rundir.checkpointed_step(run_dir(p)):
            resumable[p.name] = rundir.checkpointed_step(run_dir(p))
    os.makedirs(runs_dir, exist_ok=True)
    rundir.write_json(os.path.join(workdir, rundir.SWEEP),
                {"description": sweep.description, "base": train.config_json(sweep.base), "points": recorded,
                 "analyses": [dataclasses.asdict(a) for a in sweep.analyses]})
    todo = [] if analyze_only else [p for p in points if p.name not in done]
    if done:
        _say(f"{len(done)} of {len(points)} runs finished earlier, skipped: {', '.join(done)}")
    if resumable and todo:
        _say(f"{len(resumable)} resume from a checkpoint: "
             + ", ".join(f"{n} at step {s}" for n, s in resumable.items()))
    t0 = time.perf_counter()
    outcomes = {}
    if todo:
        prepare_data([p.config for p in todo])
        groups = plan(todo, vectorize=vectorize, max_members=max_members)
        _say(f"running {len(todo)} run(s) ({sum(p.config.steps for p in todo)} steps) as {len(groups)} program(s)"
             + (" (points that share every shape run vectorised, as members of one program)"
                if len(groups) < len(todo) else "")
             + (f", {workers} at a time" if backend == "local" and workers > 1 else "")
             + f"; each run's output goes to {os.path.join(runs_dir, '<name>', 'log.txt')}")
        bar = _Progress(points, run_dir, set(done), progress)
        try:
            if backend == "local":
                outcomes = _run_local(groups, run_dir, workers, bar)
            else:
                outcomes = _run_submitit(groups, run_dir, workdir, cluster, dict(slurm or {}), bar)
        finally:
            bar.close()
    summary = {"points": len(points), "skipped": done,
               "finished": sorted(n for n, r in outcomes.items() if r["status"] == "finished"),
               "failed": {n: r["error"] for n, r in sorted(outcomes.items()) if r["status"] != "finished"},
               "missing": sorted(p.name for p in points if analyze_only and p.name not in done),
               "seconds": time.perf_counter() - t0, "report": None}
    if summary["finished"] or done:
        summary["report"] = analyze(sweep, workdir, verbose=progress)
        _say(f"report: {summary['report']}")
    rundir.write_json(os.path.join(workdir, rundir.SUMMARY), summary)
    return summary


def _columns_row(sweep: Sweep, config) -> dict:
    """The flat config of a point with the sweep's derived columns (as an analysis sees them)."""
    from experiments import train
    from jaxneg import results

    row = rundir.flat(train.config_json(config))
    for name, expr in sweep.columns.items():
        try:
            row[name] = results.evaluate_expression(expr, row)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"sweep column {name!r} = {expr!r}: {type(e).__name__}: {e}") from None
    return row


def _check_analysis(a: Analysis, points, sweep: Sweep | None = None):
    from jaxneg import results, scaling

    scaling.LAWS.get(a.law)
    row = _columns_row(sweep, points[0].config) if sweep is not None else rundir.flat(points[0].config.to_dict())
    for field in filter(None, (a.x, a.group)):
        if field not in row:
            raise ValueError(f"sweep analysis: {field!r} is not a config field or a column of the sweep")
    if a.where:
        try:
            selected = [p for p in points if results.evaluate_expression(a.where, _columns_row(sweep, p.config))]
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"sweep analysis where={a.where!r}: {type(e).__name__}: {e}") from None
        if not selected:
            raise ValueError(f"sweep analysis where={a.where!r} selects no point")
    if not isinstance(a.n_bootstrap, int) or a.n_bootstrap < 0 or a.n_bootstrap == 1:
        raise ValueError(f"sweep analysis: n_bootstrap must be 0 or an integer >= 2, got {a.n_bootstrap!r}")


# ----------------------------------------------------------------------------- analysis


plot_name = analysis.plot_name


def analyze(sweep: Sweep, workdir: str, verbose: bool = False) -> str:
    """Write ``results.csv``, then the analyses' ``fits.json``, PNGs and ``report.md``
    (:func:`jaxneg.analysis.write_report`); return the report's path."""
    from jaxneg import results

    runs_dir = os.path.join(workdir, rundir.RUNS)
    df = results.derive(results.load(runs_dir), sweep.columns)
    df.to_csv(os.path.join(workdir, rundir.RESULTS), index=False)
    table = results.derive(results.runs(runs_dir), sweep.columns)
    swept = [c for c in results.varying(table) if c not in sweep.columns]
    # final_loss stays in results.csv but not here: a contrastive loss is bounded by log(number of
    # candidates), so it is not comparable across batch sizes or negative counts
    metrics = list(dict.fromkeys([a.y for a in sweep.analyses] + ["wall_seconds"]))
    wide = df[df.metric.isin(metrics)].pivot_table(index=["run"] + swept, columns="metric", values="value")
    wide = wide.reset_index().sort_values(swept or ["run"])
    preamble = [sweep.description.strip(), ""] if sweep.description else []
    n_points = len(rundir.read_json(os.path.join(workdir, rundir.SWEEP))["points"])  # written by run()
    preamble += [f"{table.status.eq('finished').sum()} of {n_points} runs finished"
                 + (f"; not finished: {', '.join(table.run[table.status != 'finished'])}"
                    if (table.status != "finished").any() else "")
                 + ". Every number below is read from `runs/*/result.json` (`results.csv`). The training loss "
                   "(`final_loss` in `results.csv`) is left out: it is bounded by log(number of candidates) and not "
                   "comparable across batch sizes.", ""]
    preamble += ["## Runs", "", _markdown(wide[swept + [m for m in metrics if m in wide.columns]]), ""]
    return analysis.write_report(df, sweep.analyses, workdir, title=f"Sweep report: {os.path.basename(workdir)}",
                                 preamble=preamble, say=_say if verbose else None)


def _markdown(df) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return analysis.markdown_table(list(df.columns), [[cell(v) for v in row] for row in df.itertuples(index=False)])


# ----------------------------------------------------------------------------- command line


def _literal_items(text: str) -> dict:
    """``--slurm "slurm_partition='gpu',timeout_min=60"`` as submitit keyword arguments."""
    return {k: config_lib.parse_value(v) for k, v in config_lib.arg_options(text, "--slurm").items()}


_OVERRIDES: list = []  # (field, text) of --config.<field>=<value>, filled by config_lib.flags_parser


def main(argv):
    from absl import app, flags, logging

    from experiments import train

    del argv
    logging.set_verbosity(logging.WARNING)
    cache = train.enable_compilation_cache()
    if cache:  # worker processes use it too
        os.environ["JAXNEG_COMPILATION_CACHE"] = cache
    F = flags.FLAGS
    try:
        sweep = load_sweep(F.config)
        config_lib.apply_arg(sweep.base, F.base, "--base")
        config_lib.apply_overrides(sweep.base, _OVERRIDES)
        if F.dry_run:
            points = expand(sweep)
            for p in points:
                print(p.name)
            print(f"{len(points)} points, all valid", file=sys.stderr)
            return
        if not F.workdir:
            raise app.UsageError("--workdir is required (the sweep directory)")
        with stopping.on_signals():
            summary = run(sweep, F.workdir, backend=F.backend, workers=F.workers, cluster=F.cluster,
                          slurm=_literal_items(F.slurm), progress=F.progress, analyze_only=F.analyze_only,
                          extend=F.extend, vectorize=F.vectorize, max_members=F.max_members)
    except stopping.Stop as stop:
        stopping.exit_stopped(stop, "the same command (finished runs are skipped, the others resume from their "
                                    "last checkpoint)")
    except (config_lib.ConfigError, ValueError, stopping.Busy) as e:
        # run() raises only before any point starts (a point's own failure is recorded, not raised)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({k: summary[k] for k in ("points", "finished", "failed", "report")}, indent=2))
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} run(s) failed; see runs/<name>/error.txt or failed.json; "
              f"launching the sweep again retries them", file=sys.stderr)
        sys.exit(3)


def _flags():
    from absl import flags

    flags.DEFINE_string("config", "experiments/configs/quickstart.py",
                        "sweep config: path/to/file.py[:arg] whose get_config(arg) returns a Sweep. "
                        "--config.<field>=<value> overrides a field of its base run config")
    flags.DEFINE_string("workdir", None, "sweep directory (created; an existing one is resumed)")
    flags.DEFINE_enum("backend", "local", BACKENDS, "local processes, or one slurm job per run (submitit)")
    flags.DEFINE_integer("workers", 1, "local backend: runs at a time (1 = in this process)")
    flags.DEFINE_string("cluster", "slurm", "slurm backend: submitit cluster (slurm; local or debug to test)")
    flags.DEFINE_string("slurm", "", "slurm backend: submitit parameters, e.g. \"slurm_partition='gpu',timeout_min=60\"")
    flags.DEFINE_string("base", "", "overrides of the base run config: \"steps=100,eval.max_examples=500\"")
    flags.DEFINE_bool("dry_run", False, "list the (validated) points and exit")
    flags.DEFINE_bool("analyze_only", False, "run nothing; rewrite the analysis from the finished runs")
    flags.DEFINE_bool("extend", False, "allow adding points to an existing sweep directory (never removing any)")
    flags.DEFINE_bool("vectorize", True, "run the points that share every shape (differing in seed, temperature, "
                      "learning rate, ...) as members of one compiled program; false: one point per program")
    flags.DEFINE_integer("max_members", 0, "at most this many points per vectorised program (0 = no limit)")
    flags.DEFINE_bool("progress", True, "a progress bar over the steps of every run, and the analysis phase")


if __name__ == "__main__":
    from absl import app, flags

    # run the importable module, not this __main__ copy: configs build experiments.sweep.Sweep
    from experiments import sweep as _module

    _module._flags()
    flags.adopt_module_key_flags(_module)  # so --help lists them
    app.run(_module.main, flags_parser=config_lib.flags_parser(_module._OVERRIDES))
