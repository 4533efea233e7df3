"""``python -m experiments.train``: the run command line (:func:`experiments.cli.train_command`)."""

from experiments.cli import train_command

train_command()
