"""The command lines: ``python -m experiments.train`` (:func:`train_command`) and ``python -m
experiments.sweep`` (:func:`sweep_command`).

Each parses its flags and ``--config.<field>=<value>`` overrides (:mod:`experiments.config_lib`),
turns on the persistent compilation cache, runs the loop (:func:`experiments.train.train`) or the
launcher (:func:`experiments.sweep.run`) under :func:`experiments.stopping.on_signals`, and maps
the outcome to an exit status:

====  ==========================================================================================
0     finished
2     a bad config, flag or work directory (one ``error:`` line; nothing was created or compiled),
      or a directory in use by another launch
3     a run's loss stopped being finite (train) or some runs failed (sweep; a relaunch retries them)
130   stopped by SIGINT (Ctrl-C), 143 by SIGTERM: finished runs and checkpoints kept, one line
      says how to resume
====  ==========================================================================================
"""

from __future__ import annotations

import json
import os
import sys

from experiments import config_lib, stopping, sweep, train
from experiments.configs import arguments
from jaxneg import parallel


def split_overrides(argv):
    """``(rest, [(field, text), ...])``: take ``--config.<field>=<value>`` (or ``--config.<field> <value>``)
    out of ``argv``; the rest goes to absl."""
    import re

    pattern = re.compile(r"^--config\.([A-Za-z_][\w.]*)(?:=(.*))?$", re.S)
    rest, out, i = [], [], 0
    while i < len(argv):
        m = pattern.match(argv[i])
        if m is None:
            rest.append(argv[i])
        elif m.group(2) is not None:
            out.append((m.group(1), m.group(2)))
        elif i + 1 < len(argv):
            out.append((m.group(1), argv[i + 1]))
            i += 1
        else:
            raise config_lib.ConfigError(f"{argv[i]} needs a value: {argv[i]}=VALUE")
        i += 1
    return rest, out


def flags_parser(store: list):
    """An absl ``flags_parser`` that moves ``--config.<field>=<value>`` items into ``store`` (see
    :func:`split_overrides`) and parses the rest; a malformed override prints one line and exits 2."""

    def parse(argv):
        import sys

        from absl import app

        try:
            rest, store[:] = split_overrides(argv)
        except config_lib.ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        return app.parse_flags_with_usage(rest)

    return parse


def apply_overrides(config, overrides):
    """Apply ``[(field, text)]`` from :func:`split_overrides` (values parsed by :func:`experiments.configs.arguments.parse_value`)."""
    for field, text in overrides:
        with config_lib.config_errors():
            config_lib.set_field(config, field, arguments.parse_value(text), f"--config.{field}")
    return config

def _list_in_help() -> None:
    """Make this module's flags key flags of the main program, so its ``--help`` lists them."""
    from absl import flags

    for flag in flags.FLAGS.get_key_flags_for_module(__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


# ----------------------------------------------------------------------------- python -m experiments.train

_TRAIN_OVERRIDES: list = []  # (field, text) of --config.<field>=<value>, filled by flags_parser


def _train_main(argv):
    from absl import flags, logging

    del argv
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    train.enable_compilation_cache()
    try:
        config = apply_overrides(config_lib.load_file(flags.FLAGS.config), _TRAIN_OVERRIDES)
        if flags.FLAGS.baselines is not None:
            try:
                seeds = [int(s) for s in flags.FLAGS.baselines.split(",") if s.strip()] or None
            except ValueError:
                raise config_lib.ConfigError(f"--baselines must be comma-separated seeds (e.g. 0,1,2) or empty, got "
                                             f"{flags.FLAGS.baselines!r}") from None
            with config_lib.config_errors():  # a bad config is one line and exit status 2, as for training
                config_lib.validate(config)
            print(json.dumps(train.baselines(config, seeds), indent=2, default=float))
            return
        if not flags.FLAGS.workdir:
            raise config_lib.ConfigError("--workdir is required (except with --baselines)")
        with stopping.on_signals():
            result = train.train(config, flags.FLAGS.workdir)
    except stopping.Stop as stop:
        stopping.exit_stopped(stop, "the same command (it resumes from the last checkpoint)")
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except train.NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    print(json.dumps({"workdir": flags.FLAGS.workdir, **result["eval"]}, indent=2, default=float))


def _train_flags():
    from absl import flags

    flags.DEFINE_string("config", "experiments/configs/simclr_mnist1d.py",
                        "run config: path/to/file.py[:arg]. Override any field with --config.<field>=<value> "
                        "(a Python literal, else a string), including keyword arguments: "
                        "--config.loss.kwargs.tau_plus=0.1, --config.model.kwargs.channels='(16, 32)'")
    flags.DEFINE_string("workdir", None, "run directory (created; an existing one is resumed); required to train")
    flags.DEFINE_string("baselines", None, "print the run's baselines (raw-input and untrained-encoder metrics of its "
                        "evaluation protocol) as JSON and exit without training: --baselines= for the config's seed, "
                        "--baselines=0,1,2 for the untrained encoder's mean over those seeds")


def train_command() -> None:
    """``python -m experiments.train --config FILE[:arg] --workdir DIR [--config.<field>=<value> ...]``."""
    from absl import app

    _train_flags()
    _list_in_help()
    parallel.initialize()
    app.run(_train_main, flags_parser=flags_parser(_TRAIN_OVERRIDES))


# ----------------------------------------------------------------------------- python -m experiments.sweep

_SWEEP_OVERRIDES: list = []  # (field, text) of --config.<field>=<value>, filled by flags_parser


def slurm_options(text: str) -> dict:
    """``--slurm "slurm_partition='gpu',timeout_min=60"`` as submitit keyword arguments."""
    return {k: arguments.parse_value(v) for k, v in arguments.arg_options(text, "--slurm").items()}


def _sweep_main(argv):
    from absl import app, flags, logging

    del argv
    logging.set_verbosity(logging.WARNING)
    cache = train.enable_compilation_cache()
    if cache:  # worker processes use it too
        os.environ["JAXNEG_COMPILATION_CACHE"] = cache
    F = flags.FLAGS
    try:
        spec = sweep.load_sweep(F.config)
        arguments.apply_arg(spec.base, F.base, "--base")
        apply_overrides(spec.base, _SWEEP_OVERRIDES)
        if F.dry_run:
            points = sweep.expand(spec)
            for p in points:
                print(p.name)
            print(f"{len(points)} points, all valid", file=sys.stderr)
            return
        if not F.workdir:
            raise app.UsageError("--workdir is required (the sweep directory)")
        with stopping.on_signals():
            summary = sweep.run(spec, F.workdir, backend=F.backend, workers=F.workers, cluster=F.cluster,
                          slurm=slurm_options(F.slurm), progress=F.progress, analyze_only=F.analyze_only,
                          extend=F.extend, vectorize=F.vectorize, max_members=F.max_members,
                          members_per_step=F.members_per_step,
                          baselines=F.baselines)
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


def _sweep_flags():
    from absl import flags

    flags.DEFINE_string("config", "experiments/configs/quickstart.py",
                        "sweep config: path/to/file.py[:arg] whose get_config(arg) returns a Sweep. "
                        "--config.<field>=<value> overrides a field of its base run config")
    flags.DEFINE_string("workdir", None, "sweep directory (created; an existing one is resumed)")
    flags.DEFINE_enum("backend", "local", sweep.BACKENDS, "local processes, or one slurm job per run (submitit)")
    flags.DEFINE_integer("workers", 1, "local backend: runs at a time (1 = in this process)")
    flags.DEFINE_string("cluster", "slurm", "slurm backend: submitit cluster (slurm; local or debug to test)")
    flags.DEFINE_string("slurm", "", "slurm backend: submitit parameters, e.g. \"slurm_partition='gpu',timeout_min=60\"")
    flags.DEFINE_string("base", "", "overrides of the base run config: \"steps=100,eval.max_examples=500\"")
    flags.DEFINE_bool("dry_run", False, "list the (validated) points and exit")
    flags.DEFINE_bool("analyze_only", False, "run nothing; rewrite the analysis from the finished runs")
    flags.DEFINE_bool("baselines", True, "compute baselines.json (the raw inputs' and the untrained encoder's "
                      "metrics of each evaluation protocol, once) and read the report against them")
    flags.DEFINE_bool("extend", False, "allow adding points to an existing sweep directory (never removing any)")
    flags.DEFINE_bool("vectorize", True, "run the points that share every shape (differing in seed, temperature, "
                      "learning rate, ...) as members of one compiled program; false: one point per program")
    flags.DEFINE_integer("max_members", 0, "at most this many points per vectorised program (0 = no limit)")
    flags.DEFINE_integer("members_per_step", 0, "members of a program that one compiled step trains at once (vmap); "
                         "0: 1 on CPU (faster per member there), all on an accelerator")
    flags.DEFINE_bool("progress", True, "a progress bar over the steps of every run, and the analysis phase")


def sweep_command() -> None:
    """``python -m experiments.sweep --config FILE[:arg] --workdir DIR [flags]``."""
    from absl import app

    _sweep_flags()
    _list_in_help()
    app.run(_sweep_main, flags_parser=flags_parser(_SWEEP_OVERRIDES))
