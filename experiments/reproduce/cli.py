"""The command line of the paper tables: ``python -m experiments.reproduce.<name> --workdir D`` parses its
flags, runs the module's sweep (``get_config(arg)``; finished runs are skipped) and prints the module's
``report(df, points, arg)``. No statistics and no tables of its own."""

from __future__ import annotations

import argparse
import os
import sys

from experiments import sweep as S


def main(module, argv=None) -> None:
    """Run ``module``'s table: ``--workdir`` (resumed if it exists), ``--workers``, ``--arg`` (the config
    argument, ``key=value,...``), ``--print_only`` (read the finished runs, run nothing), ``--backend`` and
    ``--slurm`` (as for ``experiments.sweep``); a module with ``ARG_CHOICES = (flag, choices, key)`` also takes
    ``--<flag> CHOICE``, passed as ``key=CHOICE``."""
    from experiments import cli
    from jaxneg import results, rundir

    p = argparse.ArgumentParser(description=module.__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="the sweep directory (resumed if it exists)")
    p.add_argument("--workers", type=int, default=1, help="runs at a time on this machine")
    p.add_argument("--arg", default=None, help="the config argument (key=value,...)")
    p.add_argument("--print_only", action="store_true", help="read the finished runs; run nothing")
    p.add_argument("--backend", choices=S.BACKENDS, default="local")
    p.add_argument("--slurm", default="", help="submitit parameters, as for experiments.sweep")
    choice = getattr(module, "ARG_CHOICES", None)
    if choice:
        p.add_argument(f"--{choice[0]}", choices=choice[1], required=True)
    args = p.parse_args(argv)
    arg = ",".join(filter(None, [args.arg, f"{choice[2]}={getattr(args, choice[0])}" if choice else None])) or None
    sw = module.get_config(arg)
    summary = S.run(sw, args.workdir, workers=args.workers, backend=args.backend,
                    slurm=cli.slurm_options(args.slurm), analyze_only=args.print_only)
    if summary["failed"]:
        print(f"warning: failed runs: {summary['failed']}", file=sys.stderr)
    df = results.load(os.path.join(args.workdir, rundir.RUNS))
    print(module.report(df, S.expand(sw), arg))
