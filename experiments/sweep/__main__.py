"""``python -m experiments.sweep``: the sweep command line (:func:`experiments.cli.sweep_command`)."""

from experiments.cli import sweep_command

sweep_command()
