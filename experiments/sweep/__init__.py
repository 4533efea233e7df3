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

from experiments.spec import (Analysis, Part, Point, Sweep, check_analysis, columns_row, expand, get_field,  # noqa: F401
                              load_sweep)
from experiments.sweep.backends import BACKENDS, plan, run_group, share_device_memory
from experiments.sweep.launcher import prepare_data, run
from experiments.sweep.report import (COLLAPSE_LOSS, COLLAPSE_NORM, MEAN_NORM, analyze, collapsed, program_accounts,
                                      write_baselines)

__all__ = ["Analysis", "BACKENDS", "COLLAPSE_LOSS", "COLLAPSE_NORM", "MEAN_NORM", "Part", "Point", "Sweep", "analyze",
           "check_analysis", "collapsed", "columns_row", "expand", "get_field", "load_sweep", "plan", "prepare_data",
           "program_accounts", "run", "run_group", "share_device_memory", "write_baselines"]
