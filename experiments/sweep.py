r"""Sweeps over config fields: ``python -m experiments.sweep --config C[:arg] --workdir DIR``.

::

    python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/quickstart
    python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/qs --workers 2
    python -m experiments.sweep --config my_sweep.py --workdir /scratch/s --backend slurm \
        --slurm "slurm_partition='gpu',gpus_per_node=1,timeout_min=120"

A sweep config is a module whose ``get_config(arg)`` returns a :class:`Sweep`: a base run
config (``experiments.train``'s schema), a ``grid`` ``{field: values}`` whose Cartesian
product is swept, ``zip`` groups ``{field: values, other: values}`` whose fields vary
together (batch size with the step count that keeps the epochs fixed, say), and the
:class:`Analysis` fits to make at the end. Every point is expanded and validated before
the first run starts; a bad field or value fails naming the point.

Layout of ``DIR``::

    sweep.json                 the points (name -> overrides) and the base config
    runs/<name>/               one experiments.train work directory per point
    results.csv                jaxneg.results.load(DIR/runs): one row per run and metric
    fits.json, <y>.png         one law per group of each Analysis, with bootstrap intervals
    report.md                  the run table, the fitted parameters and the plots
    summary.json               finished / failed / skipped runs of the last launch

Backends: ``local`` runs points one after another in this process (``--workers 1``) or
in N worker processes (each run's output in ``runs/<name>/log.txt``); ``slurm`` submits
one job per point through ``submitit`` (``--cluster local`` runs those jobs as local
processes, for testing). Launching the same sweep again skips finished runs, resumes
interrupted ones from their last checkpoint and retries failed ones; the analysis is
rewritten from every finished run. Datasets are prepared once, here, before any worker
starts, so workers never race to write the same tfds files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import itertools
import json
import os
import re
import sys
import time
import traceback
from typing import Mapping, Sequence

import ml_collections

from experiments import config_lib

BACKENDS = ("local", "slurm")


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Fit ``law`` to metric ``y`` (or ``1 - y`` with ``complement``) against config field ``x``, per ``group``."""

    x: str
    y: str
    group: str | None = None
    law: str = "power"
    complement: bool = False
    n_bootstrap: int = 200
    level: float = 0.95


@dataclasses.dataclass
class Sweep:
    """What to sweep: ``base`` run config, ``grid`` axes, ``zip`` groups, ``analyses``."""

    base: ml_collections.ConfigDict
    grid: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    zip: Sequence[Mapping[str, Sequence]] | Mapping[str, Sequence] = ()
    analyses: Sequence[Analysis] = ()
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Point:
    name: str                                  # run directory name, from the swept values
    overrides: dict                            # field -> value
    config: ml_collections.ConfigDict


# ----------------------------------------------------------------------------- expansion


def _parent(config, field, where):
    """``(node, leaf)`` such that ``node[leaf]`` is the dotted ``field`` of ``config``."""
    node = config
    *parents, leaf = field.split(".")
    try:
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(leaf)
    except (KeyError, AttributeError, TypeError):
        raise ValueError(f"{where}: unknown config field {field!r}") from None
    return node, leaf


def get_field(config, field: str, where: str = "sweep"):
    """The value of the dotted ``field`` (``"optimizer.learning_rate"``) of ``config``."""
    node, leaf = _parent(config, field, where)
    return node[leaf]


def _set(config, field, value, where):
    node, leaf = _parent(config, field, where)
    node[leaf] = tuple(value) if isinstance(value, list) else value


def _axes(sweep: Sweep) -> list[list[dict]]:
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
    axes = _axes(sweep)
    fields = [f for axis in axes for f in axis[0]]
    short = _short_names(fields)
    points, names = [], {}
    for combo in itertools.product(*axes):
        overrides = {k: v for part in combo for k, v in part.items()}
        name = ",".join(f"{short[f]}={_fmt(overrides[f])}" for f in fields) or "run"
        config = copy.deepcopy(sweep.base)
        for field, value in overrides.items():
            _set(config, field, value, f"sweep point {name}")
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
    """Import ``path/to/config.py[:arg]`` and return its ``get_config(arg)``."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sweep: config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_jaxneg_sweep_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"sweep: {path} defines no get_config(arg)")
    return module.get_config(arg or None)


# ----------------------------------------------------------------------------- running one point


def run_point(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train one point (``experiments.train.train``); a failure is returned, not raised.

    Returns ``{"status": "finished", "eval": {...}}`` or ``{"status": "failed", "error": "..."}``
    (the traceback also goes to ``workdir/error.txt``).
    """
    from experiments import train

    error = os.path.join(workdir, "error.txt")
    if os.path.exists(error):  # from an earlier attempt
        os.remove(error)
    try:
        result = train.train(config, workdir)
        return {"status": "finished", "eval": result["eval"]}
    except Exception as e:  # a run's failure must not stop the sweep
        os.makedirs(workdir, exist_ok=True)
        with open(error, "w") as f:
            f.write(traceback.format_exc())
        return {"status": "failed", "error": f"{type(e).__name__}: {e}"}


@contextlib.contextmanager
def _output_to(path):
    """Send this process's stdout and stderr (file descriptors, so C++ logs too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
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

    logging.set_verbosity(logging.WARNING)


def _worker_run(config, workdir):
    os.makedirs(workdir, exist_ok=True)
    with _output_to(os.path.join(workdir, "log.txt")):
        return run_point(config, workdir)


# ----------------------------------------------------------------------------- backends


def _progress(total, done, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="run", dynamic_ncols=True, file=sys.stderr)


def _run_local(todo, run_dir, workers, bar):
    out = {}
    if workers == 1:
        for p in todo:
            out[p.name] = run_point(p.config, run_dir(p))
            _tick(bar, out)
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        futures = {pool.submit(_worker_run, p.config, run_dir(p)): p for p in todo}
        for fut in cf.as_completed(futures):
            try:
                out[futures[fut].name] = fut.result()
            except Exception as e:  # the worker process died (killed, out of memory)
                out[futures[fut].name] = {"status": "failed", "error": f"worker died: {type(e).__name__}: {e}"}
            _tick(bar, out)
    return out


def _run_submitit(todo, run_dir, workdir, cluster, params, bar):
    import submitit

    executor = submitit.AutoExecutor(folder=os.path.join(workdir, "submitit", "%j"), cluster=cluster)
    if params:
        executor.update_parameters(**params)
    jobs = {}
    with executor.batch():
        for p in todo:
            jobs[p.name] = executor.submit(run_point, p.config, run_dir(p))
    names = {id(j): n for n, j in jobs.items()}
    out = {}
    for job in submitit.helpers.as_completed(list(jobs.values())):
        try:
            out[names[id(job)]] = job.result()
        except Exception as e:  # the job itself failed (preempted, timed out, killed)
            out[names[id(job)]] = {"status": "failed", "error": f"job {job.job_id}: {type(e).__name__}: {e}"}
        _tick(bar, out)
    return out


def _tick(bar, out):
    if bar is not None:
        bar.update(1)
        bar.set_postfix(failed=sum(r["status"] != "finished" for r in out.values()))


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


def run(sweep: Sweep, workdir: str, *, backend: str = "local", workers: int = 1, cluster: str = "slurm",
        slurm: Mapping | None = None, progress: bool = True, analyze_only: bool = False) -> dict:
    """Run every unfinished point of ``sweep`` under ``workdir``, then write the analysis.

    Returns the summary (also ``workdir/summary.json``): ``finished``, ``skipped``
    (finished before this launch), ``failed`` ({name: error}) and ``report`` (path or None).
    """
    from experiments import train

    if backend not in BACKENDS:
        raise ValueError(f"sweep: backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"sweep: workers must be an integer >= 1, got {workers!r}")
    points = expand(sweep)
    for a in sweep.analyses:
        _check_analysis(a, points)
    workdir = os.path.abspath(workdir)
    runs_dir = os.path.join(workdir, "runs")
    run_dir = lambda p: os.path.join(runs_dir, p.name)
    done = []
    for p in points:  # a run directory of another config is an error before anything runs
        cfg = os.path.join(run_dir(p), "config.json")
        if os.path.exists(cfg):
            with open(cfg) as f:
                if json.load(f) != train.config_json(p.config):
                    raise ValueError(f"sweep: {run_dir(p)} holds a run of a different config than point "
                                     f"{p.name}; use another --workdir (or delete that run)")
        if os.path.exists(os.path.join(run_dir(p), "result.json")):
            done.append(p.name)
    os.makedirs(runs_dir, exist_ok=True)
    _write_json(os.path.join(workdir, "sweep.json"),
                {"description": sweep.description, "base": train.config_json(sweep.base),
                 "points": [{"name": p.name, "overrides": p.overrides} for p in points],
                 "analyses": [dataclasses.asdict(a) for a in sweep.analyses]})
    todo = [] if analyze_only else [p for p in points if p.name not in done]
    t0 = time.perf_counter()
    outcomes = {}
    if todo:
        prepare_data([p.config for p in todo])
        bar = _progress(len(points), len(points) - len(todo), progress)
        try:
            if backend == "local":
                outcomes = _run_local(todo, run_dir, workers, bar)
            else:
                outcomes = _run_submitit(todo, run_dir, workdir, cluster, dict(slurm or {}), bar)
        finally:
            if bar is not None:
                bar.close()
    summary = {"points": len(points), "skipped": done,
               "finished": sorted(n for n, r in outcomes.items() if r["status"] == "finished"),
               "failed": {n: r["error"] for n, r in sorted(outcomes.items()) if r["status"] != "finished"},
               "missing": sorted(p.name for p in points if analyze_only and p.name not in done),
               "seconds": time.perf_counter() - t0, "report": None}
    if summary["finished"] or done:
        summary["report"] = analyze(sweep, workdir)
    _write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def _check_analysis(a: Analysis, points):
    from jaxneg import scaling

    scaling.LAWS.get(a.law)
    for field in filter(None, (a.x, a.group)):
        try:
            get_field(points[0].config, field)
        except ValueError:
            raise ValueError(f"sweep analysis: {field!r} is not a config field") from None
    if not isinstance(a.n_bootstrap, int) or a.n_bootstrap < 0 or a.n_bootstrap == 1:
        raise ValueError(f"sweep analysis: n_bootstrap must be 0 or an integer >= 2, got {a.n_bootstrap!r}")


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
    os.replace(tmp, path)


def _json_default(v):
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


# ----------------------------------------------------------------------------- analysis


def analyze(sweep: Sweep, workdir: str) -> str:
    """Write ``results.csv``, ``fits.json``, one PNG per analysis and ``report.md``; return the report's path."""
    from jaxneg import results

    runs_dir = os.path.join(workdir, "runs")
    df = results.load(runs_dir)
    df.to_csv(os.path.join(workdir, "results.csv"), index=False)
    table = results.runs(runs_dir)
    swept = results.varying(table)
    fits_json, sections = [], []
    for a in sweep.analyses:
        stem = _fmt(("1-" if a.complement else "") + a.y.replace("/", "_"))
        try:
            fits = results.fit_groups(df, x=a.x, y=a.y, group=a.group, law=a.law, complement=a.complement,
                                      n_bootstrap=a.n_bootstrap, level=a.level)
        except ValueError as e:  # too few finished points yet: the rest of the report still stands
            sections.append(f"### {a.y} vs {a.x}\n\nnot fitted: {e}\n")
            continue
        fig = results.plot_fits(fits, xlabel=a.x, group_label=a.group or "",
                                title=f"{fits[0].label}: {a.law} law, {int(a.level * 100)}% bootstrap band")
        fig.savefig(os.path.join(workdir, f"{stem}.png"), dpi=120)
        fits_json += [{"x": a.x, "y": a.y, "complement": a.complement, "law": a.law, "group_field": a.group,
                       **gf.to_json()} for gf in fits]
        sections.append(_fit_section(a, fits, f"{stem}.png"))
    _write_json(os.path.join(workdir, "fits.json"), fits_json)
    metrics = list(dict.fromkeys([a.y for a in sweep.analyses] + ["final_loss", "wall_seconds"]))
    wide = df[df.metric.isin(metrics)].pivot_table(index=["run"] + swept, columns="metric", values="value")
    wide = wide.reset_index().sort_values(swept or ["run"])
    lines = [f"# Sweep report: {os.path.basename(workdir)}", ""]
    if sweep.description:
        lines += [sweep.description.strip(), ""]
    with open(os.path.join(workdir, "sweep.json")) as f:  # written by run(): the points, without re-expanding
        n_points = len(json.load(f)["points"])
    lines += [f"{table.status.eq('finished').sum()} of {n_points} runs finished"
              + (f"; not finished: {', '.join(table.run[table.status != 'finished'])}" if (table.status != "finished").any() else "")
              + ". Every number below is read from `runs/*/result.json` (`results.csv`).", ""]
    lines += ["## Runs", "", _markdown(wide[swept + [m for m in metrics if m in wide.columns]]), ""]
    lines += ["## Fits", ""] + sections
    path = os.path.join(workdir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def _fit_section(a, fits, png):
    pct = int(a.level * 100)
    head = [a.group or "group", "E", "A", "alpha", f"alpha {pct}% interval", "points", "holdout ARE"]
    rows = []
    for gf in fits:
        p, iv = gf.fit.params, gf.interval or {}
        ci = f"[{iv['alpha'][0]:.3g}, {iv['alpha'][1]:.3g}]" if "alpha" in iv else "-"
        rows.append([_plain(gf.group), f"{p['E']:.4g}", f"{p['A']:.4g}", f"{p['alpha']:.3f}", ci, len(gf.x),
                     "-" if gf.holdout_are is None else f"{gf.holdout_are:.3f}"])
    text = (f"### {fits[0].label} vs {a.x}\n\n`{fits[0].label} = E + A * {a.x}^-alpha` ({a.law} law, Huber on log "
            f"residuals, L-BFGS from a grid of starts; intervals from {a.n_bootstrap} bootstrap refits). "
            f"Holdout ARE: the fit without the largest {a.x}, evaluated there (|pred - obs| / obs).\n\n")
    return text + _markdown_rows(head, rows) + f"\n\n![{a.y}]({png})\n"


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _markdown(df) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return _markdown_rows(list(df.columns), [[cell(v) for v in row] for row in df.itertuples(index=False)])


def _markdown_rows(head, rows) -> str:
    out = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- command line


def _literal_items(text: str) -> dict:
    import ast

    out = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--slurm item {item!r} must look like name=value")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def main(argv):
    from absl import app, flags, logging

    del argv
    logging.set_verbosity(logging.WARNING)
    F = flags.FLAGS
    sweep = load_sweep(F.config)
    if F.base:
        config_lib.apply_arg(sweep.base, F.base)
    if F.dry_run:
        points = expand(sweep)
        for p in points:
            print(p.name)
        print(f"{len(points)} points, all valid", file=sys.stderr)
        return
    if not F.workdir:
        raise app.UsageError("--workdir is required (the sweep directory)")
    summary = run(sweep, F.workdir, backend=F.backend, workers=F.workers, cluster=F.cluster,
                  slurm=_literal_items(F.slurm), progress=F.progress, analyze_only=F.analyze_only)
    print(json.dumps({k: summary[k] for k in ("points", "finished", "failed", "report")}, indent=2))
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} run(s) failed; see runs/<name>/error.txt or failed.json; "
              f"launching the sweep again retries them", file=sys.stderr)
        sys.exit(3)


def _flags():
    from absl import flags

    flags.DEFINE_string("config", "experiments/configs/quickstart.py", "sweep config: path/to/file.py[:arg]")
    flags.DEFINE_string("workdir", None, "sweep directory (created; an existing one is resumed)")
    flags.DEFINE_enum("backend", "local", BACKENDS, "local processes, or one slurm job per run (submitit)")
    flags.DEFINE_integer("workers", 1, "local backend: runs at a time (1 = in this process)")
    flags.DEFINE_string("cluster", "slurm", "slurm backend: submitit cluster (slurm; local or debug to test)")
    flags.DEFINE_string("slurm", "", "slurm backend: submitit parameters, e.g. \"slurm_partition='gpu',timeout_min=60\"")
    flags.DEFINE_string("base", "", "overrides of the base run config: \"steps=100,eval.max_examples=500\"")
    flags.DEFINE_bool("dry_run", False, "list the (validated) points and exit")
    flags.DEFINE_bool("analyze_only", False, "run nothing; rewrite the analysis from the finished runs")
    flags.DEFINE_bool("progress", True, "a progress bar over runs")


if __name__ == "__main__":
    from absl import app

    # run the importable module, not this __main__ copy: configs build experiments.sweep.Sweep
    from experiments import sweep as _module

    _module._flags()
    app.run(_module.main)
