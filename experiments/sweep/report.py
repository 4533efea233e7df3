"""A sweep's results: ``results.csv``, the baselines of each protocol (``baselines.json``), the collapse flags,
the per-program time accounts, and ``report.md`` with its fits (:func:`jaxneg.analysis.write_report`)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from experiments import train
from experiments.spec import Sweep
from jaxneg import analysis, results, rundir


def _say(message: str) -> None:
    print(f"sweep: {message}", file=sys.stderr, flush=True)


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
    present = set(df.metric)
    regime = [m for m in REGIME if m in present] + sorted(m for m in present if m.startswith("eval/train_")
                                                          and m.endswith(("mrr@10", "ndcg@10")))
    metrics = list(dict.fromkeys([a.y for a in sweep.analyses] + [m for m in (MEAN_NORM,) if m in present]
                                 + regime + ["wall_seconds"]))
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
        preamble += [f"Raw input of {name}: {note}." for name, b in floors.items()
                     for note in b.get("raw_input_notes", {}).values()] + [""]
    table_cols = swept + shown + ["collapsed"]
    protocol_of = run_protocols(runs_dir, list(table.run), floors)
    if floors:  # flag the runs that did not beat a baseline of their own protocol (the untrained encoder: they
        # learned nothing; the raw input, e.g. BM25: they learned less than it gives)
        def below(row, key):
            floor = floors.get(protocol_of.get(row["run"]), {}).get(key, {})
            return ", ".join(m.split("/")[-1] for m in shown
                             if m in floor and np.isfinite(row[m]) and row[m] < floor[m]) or "-"
        for key, column in (("untrained_encoder", "below untrained encoder"), ("raw_input", "below raw input")):
            wide[column] = [below(row, key) for _, row in wide.iterrows()]
            table_cols.append(column)
    parts = [(a.heading(), set(results.where(df, a.where).run) | (set(results.where(df, a.control).run) if a.control
                                                                   else set())) for a in sweep.analyses]
    preamble += ["## Runs", ""] + _runs_tables(wide, table_cols, swept, protocol_of, parts)

    def baselines_of(a) -> dict:
        """The baselines of the protocol every run of analysis ``a`` shares ({} if its runs span several)."""
        names = {protocol_of.get(r) for r in results.where(df, a.where).run.unique()}
        if len(names) != 1 or None in names:
            return {}
        b = floors[names.pop()]
        return {"raw input": b["raw_input"], "untrained encoder": b["untrained_encoder"]}

    programs = program_accounts(runs_dir, list(table.run))
    return analysis.write_report(df, sweep.analyses, workdir, title=f"Sweep report: {os.path.basename(workdir)}",
                                 preamble=preamble, say=_say if verbose else None, baselines=baselines_of,
                                 time_account=_phase_sums(programs) if programs else None, timings=timings,
                                 context=regime)


def _runs_tables(wide, cols, swept, protocol_of, parts) -> list:
    """The runs table's lines: one table per part of the sweep, each with only the swept fields that vary
    among its runs and the metrics they have (a sweep of three parts would otherwise be one table of every
    field of all three). ``parts``: ``[(title, runs)]``, the runs each analysis reads (its ``where`` and its
    control), in order; a run belongs to the first that reads it, and runs no analysis reads form a table per
    protocol. One part: one table, with no heading."""
    owner = {}
    for title, runs in parts:
        for r in runs:
            owner.setdefault(r, title)
    keys = [(protocol_of.get(r, "other"), owner.get(r, "")) for r in wide.run]
    if len(set(keys)) < 2:
        return [_markdown(wide[cols]), ""]
    out = []
    for key in dict.fromkeys(keys):
        part = wide[[k == key for k in keys]]
        keep = [c for c in cols if (c not in swept or part[c].astype(str).nunique() > 1)
                and not (part[c].dtype.kind == "f" and part[c].isna().all())]
        out += [f"### {key[0]}" + (f": {key[1]}" if key[1] else "") + f" ({len(part)} runs)", "",
                _markdown(part[keep]), ""]
    return out


def run_protocols(runs_dir: str, names, floors: dict) -> dict:
    """``{run: name of its protocol in baselines.json}``: the entry whose ``protocol`` equals the one of the
    run's ``config.json`` (:func:`experiments.train.protocol_of_json`); runs of no recorded protocol are left
    out."""
    canon = lambda p: json.dumps(json.loads(json.dumps(p, default=str)), sort_keys=True)  # noqa: E731
    by_protocol = {canon(b["protocol"]): name for name, b in floors.items() if "protocol" in b}
    out = {}
    for name in names:
        path = os.path.join(runs_dir, name, rundir.CONFIG)
        if os.path.exists(path):
            key = canon(train.protocol_of_json(rundir.read_json(path)))
            if key in by_protocol:
                out[name] = by_protocol[key]
    return out


MEAN_NORM = "eval/embedding_mean_norm"
#: the regime of each run's negatives, in its runs table where it has them (issue 40): how the softmax spreads
#: over them (the effective number; the shares on stored, drawn or mined, same-class and same-group
#: negatives) and the share of queries that meet a duplicate of their positive in the batch; besides these, a
#: retrieval run's training queries' own MRR@10 / nDCG@10 (memorisation)
REGIME = ("eval/effective_negatives", "eval/negative_mass_stored", "eval/negative_mass_extra",
          "eval/negative_mass_same_class", "eval/negative_mass_same_group", "eval/batch_duplicates")
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
    """A table cell: 4 significant digits for a float, "-" for nothing."""
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _markdown(df) -> str:
    return analysis.markdown_table(list(df.columns), [[_cell(v) for v in row] for row in df.itertuples(index=False)])
