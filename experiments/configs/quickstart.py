"""The main job: batch size × temperature for SimCLR on MNIST-1D, with power-law fits.

``python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/quickstart``

Sweeps the default experiment (:mod:`experiments.configs.simclr_mnist1d`: NT-Xent over two
signal views, a 1-D CNN) over batch sizes ``B`` and temperatures ``tau``, evaluates each
encoder downstream (kNN and linear probe on frozen features: the InfoNCE value itself is
bounded by ``log 2B`` and not comparable across batch sizes), and fits per temperature

    error(B) = E + A · B^-alpha,      error = 1 - accuracy

with bootstrap intervals (:func:`jaxneg.results.fit_groups`). Writes ``results.csv``,
``fits.json``, one PNG per metric and ``report.md``.

``arg`` (``key=value,...``):
  ``budget``: ``steps`` (default; every run takes the same number of steps, so a larger
    batch sees more examples and more negatives per step) or ``epochs`` (every run sees
    the same number of examples: steps = epochs · N_train / B, as in Chen et al. 2020,
    Figure 9). ``steps=`` / ``epochs=`` set the budget (default 400 steps / 40 epochs).
  ``batches``: ``16-32-64`` (default 16-32-64-128-256-512); ``temperatures``: ``0.05-0.1-0.5``.
  ``seeds``: number of seeds (default 1); any other ``field=value`` overrides the base config.

Runs in about 6.5 minutes on 2 CPU cores with ``--workers 2`` (``BENCHMARKS.md``).
"""

from experiments.config_lib import apply_arg, arg_options, number, number_list
from experiments.configs import simclr_mnist1d
from experiments.sweep import Analysis, Sweep

NUM_TRAIN = 4000  # MNIST-1D, num_samples=5000: 80% train


def get_config(arg=None):
    opts = arg_options(arg, "quickstart")
    budget = opts.pop("budget", "steps")
    if budget not in ("steps", "epochs"):
        raise ValueError(f"quickstart: budget must be 'steps' or 'epochs', got {budget!r}")
    batches = number_list("batches", opts.pop("batches", "16-32-64-128-256-512"), int, "quickstart")
    temperatures = number_list("temperatures", opts.pop("temperatures", "0.05-0.1-0.5"), float, "quickstart")
    seeds = number("seeds", opts.pop("seeds", "1"), int, "quickstart")
    steps = number("steps", opts.pop("steps", "400"), int, "quickstart")
    epochs = number("epochs", opts.pop("epochs", "40"), float, "quickstart")

    base = simclr_mnist1d.get_config()
    base.eval.at_init = False
    base.checkpoint_every = 100      # a relaunch resumes an interrupted run from its last multiple of 100 steps
    base.log_every = 50
    base.optimizer.warmup_steps = 20
    base = apply_arg(base, ",".join(f"{k}={v}" for k, v in opts.items()))

    grid = {"loss.temperature": temperatures}
    if budget == "steps":
        base.steps = steps
        zipped = {"batch_size": batches}
        what = f"{steps} steps per run"
    else:  # the step count follows the batch size
        zipped = {"batch_size": batches, "steps": tuple(max(1, round(epochs * NUM_TRAIN / b)) for b in batches)}
        what = f"{epochs:g} epochs per run (steps = epochs * {NUM_TRAIN} / batch)"
    if seeds > 1:
        grid["seed"] = tuple(range(seeds))
    return Sweep(
        base=base,
        grid=grid,
        zip=zipped,
        analyses=(
            Analysis(x="batch_size", y="eval/knn_accuracy", group="loss.temperature", complement=True),
            Analysis(x="batch_size", y="eval/linear_probe_accuracy", group="loss.temperature", complement=True),
        ),
        description=(f"SimCLR (NT-Xent) on MNIST-1D: batch size {list(batches)} x temperature "
                     f"{list(temperatures)}, {what}, {seeds} seed(s). Downstream error = 1 - accuracy of a "
                     f"kNN classifier (k={base.eval.knn_k}) and a linear probe on frozen backbone features."),
    )
