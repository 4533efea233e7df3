"""Launching a sweep: its record (``sweep.json``), the lock of its directory, the data prepared once, the
backend run, the baselines and the analysis, and the summary."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Mapping

from experiments import config_lib, stopping, train
from experiments.spec import Sweep, check_analysis, expand
from experiments.sweep.backends import BACKENDS, _Progress, _run_local, _run_submitit, plan
from experiments.sweep.report import _phase_sums, _say, analyze, program_accounts, write_baselines
from jaxneg import data, rundir


def prepare_data(configs) -> None:
    """Prepare each distinct dataset of ``configs`` (tfds array_record files) once, here."""
    seen = set()
    for c in configs:
        key = (c.data.name, json.dumps(c.data.config.to_dict(), sort_keys=True), c.data.data_dir)
        if key not in seen:
            seen.add(key)
            data.load(c.data.name, c.data.train_split, data_dir=c.data.data_dir or None,
                      config=c.data.config.to_dict(), max_examples=1)


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
    with config_lib.config_errors():
        points = expand(sweep)
        for a in sweep.analyses:
            check_analysis(a, points, sweep)
    workdir = os.path.abspath(workdir)
    with stopping.Lock(workdir, "experiments.sweep"):  # a second launch into workdir fails here, naming this one
        return _launch(sweep, points, workdir, backend=backend, workers=workers, cluster=cluster, slurm=slurm,
                       progress=progress, analyze_only=analyze_only, extend=extend, vectorize=vectorize,
                       max_members=max_members, baselines=baselines, members_per_step=members_per_step)


def _launch(sweep, points, workdir, *, backend, workers, cluster, slurm, progress, analyze_only, extend, vectorize,
            max_members, baselines, members_per_step) -> dict:
    """:func:`run` once the sweep is validated and ``workdir`` locked: record the points, prepare the data, train
    the unfinished programs on the backend, compute the baselines, write the analysis and the summary. (About 70
    lines: the launch's phases in order, each timed into one account.)"""
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
