"""Experiment layer (configs, training, sweeps): specified in issues 5 and 6, not implemented yet."""
