r"""Sweeps over config fields: ``python -m experiments.sweep --config C[:arg] --workdir DIR``.

::

    python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/quickstart
    python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/qs --workers 2
    python -m experiments.sweep --config my_sweep.py --workdir /scratch/s --backend slurm \
        --slurm "slurm_partition='gpu',gpus_per_node=1,timeout_min=120"

What a sweep is (:class:`Sweep`, :class:`Part`, :class:`Analysis`) and how it expands into
validated points: :mod:`experiments.spec` (re-exported here, so a sweep config writes
``experiments.sweep.Sweep(...)``). This module runs one: it plans the points into programs,
runs them on a backend with a progress bar, and writes the analysis. Its command line is
:func:`experiments.cli.sweep_command`.

``DIR`` holds ``sweep.json``, one run directory per point under ``runs/``, ``results.csv``,
``fits.json``, a PNG per analysis, ``report.md`` and ``summary.json`` (the layout:
:mod:`jaxneg.rundir`).

Programs: points whose configs differ only in :data:`experiments.train.MEMBERS` (seed,
temperature, learning rate, weight decay, MoCo queue length) and in float loss keywords that are
not ``static`` in the loss' registry entry run as the
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
import dataclasses
import json
import multiprocessing
import os
import sys
import time
import traceback
from typing import Mapping

import numpy as np

from experiments import config_lib, stopping, train
from experiments.spec import (Analysis, Part, Point, Sweep, check_analysis, columns_row, expand, get_field,  # noqa: F401
                              load_sweep)
from jaxneg import analysis, data, results, rundir

BACKENDS = ("local", "slurm")


# ----------------------------------------------------------------------------- running points


def plan(points, *, vectorize: bool = True, max_members: int = 0) -> list[list[Point]]:
    """The programs that run ``points``: with ``vectorize``, points whose configs differ only in
    :data:`experiments.train.MEMBER_FIELDS` (seed, temperature, learning rate, ...) share one
    (at most ``max_members`` each; 0 = no limit); without, one point per program. Longest first."""
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


def run_group(configs, workdirs, members_per_step: int = 0) -> list[dict]:
    """Train one group (``experiments.train.train_group``); failures are returned, not raised.

    Each member's outcome is ``{"status": "finished", "eval": {...}}`` or ``{"status":
    "failed", "error": "..."}`` (the traceback also goes to its ``error.txt``).
    """
    for w in workdirs:
        error = os.path.join(w, rundir.ERROR)
        if os.path.exists(error):  # from an earlier attempt
            os.remove(error)
    try:
        results = train.train_group(list(configs), list(workdirs), members_per_step=members_per_step)
    except Exception as e:  # a run's failure must not stop the sweep
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
            train.enable_compilation_cache()


def _worker_run(configs, workdirs, members_per_step=0):
    """Run a group with the process' output (warnings, XLA logs) in its first member's ``log.txt``."""
    os.makedirs(workdirs[0], exist_ok=True)
    try:
        with _output_to(os.path.join(workdirs[0], rundir.LOG)):
            return run_group(configs, workdirs, members_per_step)
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


def _group_args(group, run_dir, width):
    return [p.config for p in group], [run_dir(p) for p in group], width


def _record_group(out, group, outcomes, progress):
    for p, o in zip(group, outcomes):
        out[p.name] = o
        progress.finished(p, o)


def share_device_memory(workers: int) -> None:
    """Give each of ``workers`` processes sharing one accelerator ``0.9 / workers`` of its memory.

    XLA preallocates 75% of a GPU's memory in every process, so a second worker on the same GPU
    would find too little. Set before the workers start (they inherit the environment); a user's own
    ``XLA_PYTHON_CLIENT_MEM_FRACTION`` or ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is kept. Several
    workers help on one accelerator because a program's compilation runs on the host's CPU while
    another worker's steps run on the device; with ``--workers 1`` one process owns the device.
    """
    if workers > 1 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ and \
            os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "").lower() not in ("false", "0"):
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / workers:.3f}"


def _run_local(groups, run_dir, workers, progress, width):
    out = {}
    if workers == 1:
        for g in groups:
            _record_group(out, g, _worker_run(*_group_args(g, run_dir, width)), progress)
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    share_device_memory(workers)
    pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    try:
        futures = {pool.submit(_worker_run, *_group_args(g, run_dir, width)): g for g in groups}
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


def _run_submitit(groups, run_dir, workdir, cluster, params, progress, width):
    import submitit

    executor = submitit.AutoExecutor(folder=os.path.join(workdir, rundir.SUBMITIT, "%j"), cluster=cluster)
    if params:
        executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for g in groups:
            jobs.append((g, executor.submit(_worker_run, *_group_args(g, run_dir, width))))
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
    new = [{"name": p.name, "overrides": p.overrides} for p in points]
    path = os.path.join(workdir, rundir.SWEEP)
    if not os.path.exists(path):
        return new
    old = rundir.read_json(path)
    base = config_lib.config_json(sweep.base)
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
        extend: bool = False, vectorize: bool = True, max_members: int = 0, baselines: bool = True,
        members_per_step: int = 0) -> dict:
    """Run every unfinished point of ``sweep`` under ``workdir``, then write the analysis.

    ``baselines``: compute ``baselines.json`` (raw input and untrained encoder of each protocol, once;
    a file that holds them already is kept) so the report reads every result against them.
    ``members_per_step``: members of a program one compiled step trains at once
    (:func:`experiments.train.step_width`; 0: one on CPU, all on an accelerator).

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
    train.step_width(members_per_step, 1)
    try:
        points = expand(sweep)
        for a in sweep.analyses:
            check_analysis(a, points, sweep)
    except config_lib.ConfigError:
        raise
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
    workdir = os.path.abspath(workdir)
    with stopping.Lock(workdir, "experiments.sweep"):  # a second launch into workdir fails here, naming this one
        return _launch(sweep, points, workdir, backend=backend, workers=workers, cluster=cluster, slurm=slurm,
                       progress=progress, analyze_only=analyze_only, extend=extend, vectorize=vectorize,
                       max_members=max_members, baselines=baselines, members_per_step=members_per_step)


def _launch(sweep, points, workdir, *, backend, workers, cluster, slurm, progress, analyze_only, extend, vectorize,
            max_members, baselines, members_per_step) -> dict:
    t_launch = time.perf_counter()
    runs_dir = os.path.join(workdir, rundir.RUNS)
    run_dir = lambda p: os.path.join(runs_dir, p.name)
    recorded = _record(sweep, points, workdir, extend)
    done, resumable = [], {}
    for p in points:  # a run directory of another config is an error before anything runs
        cfg = os.path.join(run_dir(p), rundir.CONFIG)
        if os.path.exists(cfg):
            try:
                train.check_workdir(run_dir(p), config_lib.config_json(p.config))
            except config_lib.ConfigError as e:
                raise config_lib.ConfigError(f"sweep point {p.name}: {e} (or delete that run)") from None
        if rundir.status(run_dir(p)) == "finished":
            done.append(p.name)
        elif rundir.checkpointed_step(run_dir(p)):
            resumable[p.name] = rundir.checkpointed_step(run_dir(p))
    os.makedirs(runs_dir, exist_ok=True)
    rundir.write_json(os.path.join(workdir, rundir.SWEEP),
                {"description": sweep.description, "base": config_lib.config_json(sweep.base), "points": recorded,
                 "analyses": [dataclasses.asdict(a) for a in sweep.analyses]})
    todo = [] if analyze_only else [p for p in points if p.name not in done]
    if done:
        _say(f"{len(done)} of {len(points)} runs finished earlier, skipped: {', '.join(done)}")
    if resumable and todo:
        _say(f"{len(resumable)} resume from a checkpoint: "
             + ", ".join(f"{n} at step {s}" for n, s in resumable.items()))
    outcomes = {}
    if todo:
        prepare_data([p.config for p in todo])
        groups = plan(todo, vectorize=vectorize, max_members=max_members)
    t0 = time.perf_counter()  # start-up ends: the points are checked, the data prepared, the programs planned
    if todo:
        _say(f"running {len(todo)} run(s) ({sum(p.config.steps for p in todo)} steps) as {len(groups)} program(s)"
             + (" (points that share every shape run vectorised, as members of one program)"
                if len(groups) < len(todo) else "")
             + (f", {workers} at a time" if backend == "local" and workers > 1 else "")
             + f"; each run's output goes to {os.path.join(runs_dir, '<name>', 'log.txt')}")
        bar = _Progress(points, run_dir, set(done), progress)
        try:
            if backend == "local":
                outcomes = _run_local(groups, run_dir, workers, bar, members_per_step)
            else:
                outcomes = _run_submitit(groups, run_dir, workdir, cluster, dict(slurm or {}), bar, members_per_step)
        finally:
            bar.close()
    summary = {"points": len(points), "skipped": done,
               "finished": sorted(n for n, r in outcomes.items() if r["status"] == "finished"),
               "failed": {n: r["error"] for n, r in sorted(outcomes.items()) if r["status"] != "finished"},
               "missing": sorted(p.name for p in points if analyze_only and p.name not in done),
               "seconds": time.perf_counter() - t0, "report": None}
    t_train = time.perf_counter()
    if summary["finished"] or done:
        if baselines:
            write_baselines([p.config for p in points], workdir)
        t_baselines = time.perf_counter()
        timings = {}
        summary["report"] = analyze(sweep, workdir, verbose=progress, timings=timings)
        _say(f"report: {summary['report']}")
        summary["analysis_seconds"] = timings
        account = {"startup": t0 - t_launch, "training": t_train - t0, "baselines": t_baselines - t_train,
                   "analysis": time.perf_counter() - t_baselines}
    else:
        account = {"startup": t0 - t_launch, "training": t_train - t0}
    programs = program_accounts(runs_dir, [p.name for p in points if p.name in outcomes])
    summary["time_account"] = {**account, "wall": time.perf_counter() - t_launch,
                               "programs": len({p for p, _ in programs.values()}), "passes": len(programs),
                               **_phase_sums(programs)}
    rundir.write_json(os.path.join(workdir, rundir.SUMMARY), summary)
    return summary


def program_accounts(runs_dir: str, names) -> dict:
    """``{pass: (program, time account)}`` of the passes that trained the runs ``names`` (each once).

    A program (one compiled step) trains its members in passes of ``members_per_step`` members
    (:func:`experiments.train.step_width`); each pass keeps its own account."""
    out = {}
    for name in names:
        path = os.path.join(runs_dir, name, rundir.RESULT)
        if os.path.exists(path):
            r = rundir.read_json(path)
            if "time_account" in r:
                out.setdefault(r.get("pass", r.get("program", name)), (r.get("program", name), r["time_account"]))
    return out


def _phase_sums(programs: dict) -> dict:
    """The passes' phases summed, as ``program_<phase>`` seconds (with several workers they overlap in time)."""
    phases = train.Clock.PHASES + ("total",)
    return {f"program_{k}": sum(a.get(k, 0.0) for _, a in programs.values()) for k in phases}


# ----------------------------------------------------------------------------- baselines


def write_baselines(configs, workdir: str) -> dict:
    """``baselines.json``: :func:`experiments.train.baselines` once per evaluation protocol of ``configs``
    (the untrained encoder averaged over the seeds its points use), keyed by dataset name (``name#2`` ...
    for a second protocol of the same dataset). A file that already holds the same protocols and seeds
    is kept. Returns its content."""
    path = os.path.join(workdir, rundir.BASELINES)
    groups = {}
    for c in configs:
        key = json.dumps(train.protocol(c), sort_keys=True, default=str)
        groups.setdefault(key, (c, set()))[1].add(int(c.seed))
    named = {}  # name -> (config, seeds)
    for c, seeds in groups.values():
        name = c.data.name if c.data.name not in named else f"{c.data.name}#{len(named) + 1}"
        named[name] = (c, sorted(seeds))
    text = lambda x: json.dumps(x, sort_keys=True, default=str)
    want = {name: text({"protocol": train.protocol(c), "seeds": seeds}) for name, (c, seeds) in named.items()}
    old = rundir.read_json(path) if os.path.exists(path) else {}
    if set(old) == set(want) and all(text({f: old[k].get(f) for f in ("protocol", "seeds")}) == v
                                     for k, v in want.items()):
        return old
    out = {}
    for name, (c, seeds) in named.items():
        _say(f"baselines of {name}: raw input, untrained encoder (seeds {seeds})")
        out[name] = {**train.baselines(c, seeds), "seeds": seeds}
    rundir.write_json(path, out)
    return out


# ----------------------------------------------------------------------------- analysis


plot_name = analysis.plot_name


def analyze(sweep: Sweep, workdir: str, verbose: bool = False, timings: dict | None = None) -> str:
    """Write ``results.csv``, then the analyses' ``fits.json``, PNGs and ``report.md``
    (:func:`jaxneg.analysis.write_report`); return the report's path. The report ends with the time
    account of the programs that trained the runs; ``timings`` (a dict) receives the seconds of each fit."""
    runs_dir = os.path.join(workdir, rundir.RUNS)
    df = results.derive(results.load(runs_dir), sweep.columns)
    df.to_csv(os.path.join(workdir, rundir.RESULTS), index=False)
    table = results.derive(results.runs(runs_dir), sweep.columns)
    swept = [c for c in results.varying(table) if c not in sweep.columns]
    # final_loss stays in results.csv but not here: a contrastive loss is bounded by log(number of
    # candidates), so it is not comparable across batch sizes or negative counts
    metrics = list(dict.fromkeys([a.y for a in sweep.analyses] + [m for m in (MEAN_NORM,) if m in set(df.metric)]
                                 + ["wall_seconds"]))
    # (a field only some runs have, e.g. one sampler's keyword, is NaN elsewhere: "-", or pivot drops the row)
    wide = df[df.metric.isin(metrics)].astype({c: object for c in swept}).fillna({c: "-" for c in swept})
    wide = wide.pivot_table(index=["run"] + swept, columns="metric", values="value")
    wide = wide.reset_index().sort_values(swept or ["run"])
    wide["collapsed"] = [collapsed(df[df.run == run]) or "-" for run in wide.run]
    preamble = [sweep.description.strip(), ""] if sweep.description else []
    n_points = len(rundir.read_json(os.path.join(workdir, rundir.SWEEP))["points"])  # written by run()
    preamble += [f"{table.status.eq('finished').sum()} of {n_points} runs finished"
                 + (f"; not finished: {', '.join(table.run[table.status != 'finished'])}"
                    if (table.status != "finished").any() else "")
                 + ". Every number below is read from `runs/*/result.json` (`results.csv`). The training loss "
                   "(`final_loss` in `results.csv`) is left out: it is bounded by log(number of candidates) and not "
                   "comparable across batch sizes.", ""]
    floors = _baselines(workdir)
    shown = [m for m in metrics if m in wide.columns]
    if floors:
        floor_cols = [m for m in shown if any(m in b["untrained_encoder"] for b in floors.values())]
        preamble += ["## Baselines", "", "The floors of each dataset's evaluation protocol (`baselines.json`; no "
                     "training): the raw inputs, and the encoder at initialisation (mean over the sweep's seeds). A "
                     "result means something only above both.", "",
                     analysis.markdown_table(["dataset", "representation"] + floor_cols,
                                             [[name, label] + [_cell(b[key].get(m)) for m in floor_cols]
                                              for name, b in floors.items()
                                              for label, key in (("raw input", "raw_input"),
                                                                 ("untrained encoder", "untrained_encoder"))]), ""]
    table_cols = swept + shown + ["collapsed"]
    if len(floors) == 1:  # flag the runs that did not beat the untrained encoder
        untrained = next(iter(floors.values()))["untrained_encoder"]
        below = [m for m in shown if m in untrained]
        wide["below untrained encoder"] = [", ".join(m.split("/")[-1] for m in below if row[m] < untrained[m]) or "-"
                                           for _, row in wide.iterrows()]
        table_cols.append("below untrained encoder")
    preamble += ["## Runs", "", _markdown(wide[table_cols]), ""]
    per_label = {}
    if len(floors) == 1:
        b = next(iter(floors.values()))
        per_label = {"raw input": b["raw_input"], "untrained encoder": b["untrained_encoder"]}
    programs = program_accounts(runs_dir, list(table.run))
    return analysis.write_report(df, sweep.analyses, workdir, title=f"Sweep report: {os.path.basename(workdir)}",
                                 preamble=preamble, say=_say if verbose else None, baselines=per_label,
                                 time_account=_phase_sums(programs) if programs else None, timings=timings)


MEAN_NORM = "eval/embedding_mean_norm"
#: a run is flagged collapsed when its final mean normalised embedding is longer than this, or its final
#: loss lies within COLLAPSE_LOSS (relative) of log(n + 1), the loss when every logit is equal
COLLAPSE_NORM, COLLAPSE_LOSS = 0.9, 0.01


def collapsed(rows) -> str:
    """Why one run's final metrics (``rows``: its rows of ``results.csv``) say it collapsed, or "": the length
    of its mean normalised embedding above :data:`COLLAPSE_NORM` (every embedding on one direction), or its
    final loss within :data:`COLLAPSE_LOSS` of ``log(n + 1)`` with ``n`` its ``negatives_per_anchor`` (every
    logit equal)."""
    value = dict(zip(rows.metric, rows.value))
    why = []
    if value.get(MEAN_NORM, 0.0) > COLLAPSE_NORM:
        why.append(f"mean norm {value[MEAN_NORM]:.3f}")
    if "negatives_per_anchor" in rows and "final_loss" in value:
        n = float(rows["negatives_per_anchor"].iloc[0])
        if n > 0 and abs(value["final_loss"] - np.log(n + 1)) <= COLLAPSE_LOSS * np.log(n + 1):
            why.append(f"loss {value['final_loss']:.3f} = log(n + 1)")
    return ", ".join(why)


def _baselines(workdir: str) -> dict:
    path = os.path.join(workdir, rundir.BASELINES)
    return rundir.read_json(path) if os.path.exists(path) else {}


def _cell(v) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _markdown(df) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return analysis.markdown_table(list(df.columns), [[cell(v) for v in row] for row in df.itertuples(index=False)])


__all__ = ["Analysis", "BACKENDS", "Part", "Point", "Sweep", "analyze", "check_analysis", "columns_row", "expand",
           "get_field", "load_sweep", "plan", "prepare_data", "run", "run_group", "share_device_memory"]


if __name__ == "__main__":
    from experiments import cli

    cli.sweep_command()
