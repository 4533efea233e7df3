r"""Sweep results as tidy pandas tables.

A sweep directory holds one run directory per point (the files: :mod:`jaxneg.rundir`). This
module only reads those files, so it works on a sweep copied off a cluster, while it is still
running, and in notebooks::

    df = results.load("runs/quickstart")                 # one row per finished run and metric
    df = results.where(df, "batch_size >= 64")            # the runs an expression of config fields selects

Tables:

* :func:`runs` — one row per run: ``run``, ``status`` (``finished`` / ``failed`` /
  ``running``) and every config field as a column (dotted names, ``loss.temperature``).
* :func:`load` — tidy: one row per finished run and final metric (``metric``, ``value``,
  ``step``) plus the run's config columns. Metrics: ``eval/<name>`` (final evaluation),
  ``init_eval/<name>`` (random-init encoder, when evaluated), ``final_loss``, ``wall_seconds``.
* :func:`history` — tidy: one row per run, logged step and metric of ``metrics.jsonl``.

Fits, plots and reports of these tables: :mod:`jaxneg.analysis`.
"""

from __future__ import annotations

import os

import numpy as np

from jaxneg import rundir


def _pd():
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas is a dependency
        raise ImportError("jaxneg.results needs pandas: pip install pandas") from e
    return pd


def runs(directory: str):
    """One row per run directory under ``directory``: ``run``, ``status`` and the config fields."""
    pd = _pd()
    rows = []
    for d in rundir.find_runs(directory):
        rows.append({"run": os.path.relpath(d, directory), "status": rundir.status(d),
                     **rundir.flat(rundir.read_json(os.path.join(d, rundir.CONFIG)))})
    if not rows:
        raise FileNotFoundError(f"results: no run (a directory with config.json) under {directory!r}")
    return pd.DataFrame(rows)


def load(directory: str):
    """Tidy final results: one row per finished run and metric; config fields as columns.

    Columns: ``run``, ``metric``, ``value`` (float), ``step`` (the run's last step), then every
    config field. Runs that have not finished (or failed) contribute no rows; see :func:`runs`.
    """
    pd = _pd()
    table = runs(directory)
    rows = []
    for run in table.loc[table.status == "finished", "run"]:
        res = rundir.read_json(os.path.join(directory, run, rundir.RESULT))
        metrics = {f"eval/{k}": v for k, v in res.get("eval", {}).items()}
        metrics.update({f"init_eval/{k}": v for k, v in (res.get("init_eval") or {}).items()})
        for k in ("final_loss", "wall_seconds"):
            if res.get(k) is not None:
                metrics[k] = res[k]
        rows += [{"run": run, "metric": k, "value": float(v), "step": int(res["steps"])} for k, v in metrics.items()]
    long = pd.DataFrame(rows, columns=["run", "metric", "value", "step"])
    return long.merge(table.drop(columns="status"), on="run", how="left")


def history(directory: str):
    """Tidy training curves: one row per run, logged step and metric of ``metrics.jsonl``."""
    pd = _pd()
    table = runs(directory)
    rows = []
    for run in table.run:
        for row in rundir.metric_rows(os.path.join(directory, run)):  # a run still writing: up to its last full line
            step = int(row.pop("step"))
            rows += [{"run": run, "step": step, "metric": k, "value": float(v)} for k, v in row.items()]
    long = pd.DataFrame(rows, columns=["run", "step", "metric", "value"])
    return long.merge(table, on="run", how="left")


def varying(df) -> list[str]:
    """The config columns of ``df`` (from :func:`runs`, :func:`load` or :func:`history`) that differ between runs."""
    fixed = {"run", "status", "metric", "value", "step"}
    per_run = df.drop_duplicates("run")
    return [c for c in per_run.columns if c not in fixed and per_run[c].nunique(dropna=False) > 1]


# ----------------------------------------------------------------------------- derived columns


_SAFE = {"min": min, "max": max, "abs": abs, "int": int, "float": float, "round": round, "len": len, "str": str}


def _compile(expr: str, names) -> object:
    """``expr`` with dotted config names (``moco.queue_size``) read from the row ``_r``."""
    import ast

    names = set(names)

    def dotted(node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            return ".".join([node.id] + parts[::-1])
        return None

    class Fields(ast.NodeTransformer):
        def _row(self, name, node):
            return ast.copy_location(ast.Subscript(ast.Name("_r", ast.Load()), ast.Constant(name), ast.Load()), node)

        def visit_Attribute(self, node):
            name = dotted(node)
            return self._row(name, node) if name in names else self.generic_visit(node)

        def visit_Name(self, node):
            if node.id in names:
                return self._row(node.id, node)
            if node.id not in _SAFE:
                raise ValueError(f"unknown name {node.id!r}")
            return node

    try:
        tree = ast.fix_missing_locations(Fields().visit(ast.parse(expr, mode="eval")))
    except SyntaxError as e:
        raise ValueError(f"not a Python expression ({e.msg})") from None
    return compile(tree, "<expression>", "eval")


def evaluate_expression(expr, row) -> object:
    """``expr`` (Python, over the dotted config fields of ``row``, a mapping; or a function of ``row``) for one
    run."""
    if callable(expr):
        return expr(row)
    code = _compile(expr, row.keys())
    return eval(code, {"__builtins__": _SAFE}, {"_r": row})  # noqa: S307 - names restricted to row fields


def derive(df, columns):
    """``df`` with a column per ``{name: expression}`` of config fields, evaluated run by run.

    E.g. ``{"negatives_per_anchor": "batch_size - 1 + moco.queue_size"}``; an expression may
    use earlier derived columns, and ``min``/``max``/``abs``/``int``/``float``/``round``. An
    expression may also be a function of a row (``{dotted field: value}``), called once per run
    (per distinct ``run`` where the table has one row per metric).
    """
    df = df.copy()
    for name, expr in dict(columns or {}).items():
        try:
            if callable(expr):
                records = df.to_dict("records")
                if "run" in df.columns:
                    once = {}
                    df[name] = [once[r["run"]] if r["run"] in once else once.setdefault(r["run"], expr(r))
                                for r in records]
                else:
                    df[name] = [expr(r) for r in records]
                continue
            code = _compile(expr, df.columns)  # once per expression, not per run
            df[name] = [eval(code, {"__builtins__": _SAFE}, {"_r": row}) for row in df.to_dict("records")]  # noqa: S307
        except Exception as e:  # noqa: BLE001 - the expression is the user's; name it
            raise ValueError(f"results.derive: column {name!r} = {expr!r}: {type(e).__name__}: {e}") from None
    return df


def where(df, expr: str):
    """The rows of ``df`` for which ``expr`` (as in :func:`derive`) is true; all rows for ``""``."""
    if not expr:
        return df
    try:
        code = _compile(expr, df.columns)
        keep = [bool(eval(code, {"__builtins__": _SAFE}, {"_r": row})) for row in df.to_dict("records")]  # noqa: S307
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"results.where: {expr!r}: {type(e).__name__}: {e}") from None
    return df[np.asarray(keep, bool)] if len(df) else df


__all__ = ["derive", "evaluate_expression", "history", "load", "runs", "varying", "where"]
