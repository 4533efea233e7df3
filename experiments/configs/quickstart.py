"""The main job: batch size × temperature, and negatives per anchor (in-batch vs queued), with seeds.

``python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/quickstart``

Two parts, every point trained with ``seeds`` seeds (each seed its own data order, views and
initialisation; the seeds and temperatures of one batch size run as members of one
vectorised program):

1. **Batch size × temperature** (SimCLR, NT-Xent over two signal views, a 1-D CNN on
   MNIST-1D; :mod:`experiments.configs.simclr_mnist1d`): batch sizes ``B`` × temperatures
   ``tau``. Each encoder is evaluated downstream (kNN and linear probe on frozen features; the
   InfoNCE value itself is bounded by ``log 2B`` and not comparable across batch sizes), and
   per temperature

       error(B) = E + A · B^-alpha,      error = 1 - accuracy

   is fitted to every seed's run (:func:`jaxneg.analysis.fit_groups`), with bootstrap
   intervals and the share of their width that comes from seed noise.

2. **Negatives per anchor** (MoCo: InfoNCE with a momentum key encoder, m = 0.99, and
   ``tau = neg_temperature``): the number of negatives each anchor sees, ``n = B - 1 + Q``,
   grown two ways: in-batch (``B`` in ``neg_batches``, no queue) or queued (``B = neg_batch``
   fixed and ``Q`` in ``queues`` earlier keys from the FIFO queue). Both curves are fitted,
   ``error(n) = E + A · n^-alpha``, and drawn in one figure: does a queued negative count as
   much as an in-batch one? (Queued negatives are cheaper: the step costs grow with ``B``,
   hardly with ``Q``; but they are keys of older encoders.)

``arg`` (``key=value,...``):
  ``budget``: ``steps`` (default; every run takes the same number of steps, so a larger
    batch sees more examples and more negatives per step) or ``epochs`` (part 1: every run
    sees the same number of examples, steps = epochs · N_train / B, as in Chen et al. 2020,
    Figure 9). ``steps=`` / ``epochs=`` set the budget (default 400 steps, 300 on CPU / 40 epochs).
  ``batches``: ``16-32-64``; ``temperatures``: ``0.05-0.1-0.5`` (default); ``seeds``: seeds per point;
  ``queues``: queue sizes (``queues=`` with nothing drops part 2); ``neg_batches``: in-batch sizes of
  part 2; ``neg_batch``: the batch of the queued runs (16); ``neg_temperature`` (0.1);
  ``platform``: ``cpu`` or ``accelerator``, whose defaults (:data:`DEFAULTS`) fill the options not
  given (default: the platform JAX runs on). On an accelerator: 3 seeds, 400 steps, B up to 1024,
  Q up to 16,368. On CPU, to keep README command 1 under 10 minutes on 2 cores: 2 seeds, 300
  steps, B up to 256, Q up to 4,080. Any other ``field=value`` overrides the base config.

See ``BENCHMARKS.md`` for its run time.
"""

from experiments.config_lib import apply_arg, arg_options, number, number_list
from experiments.configs import simclr_mnist1d
from experiments.sweep import Analysis, Part, Sweep

NUM_TRAIN = 4000  # MNIST-1D, num_samples=5000: 80% train


#: defaults by platform: 3 seeds and the larger grid on an accelerator; on CPU what keeps README
#: command 1 under 10 minutes on 2 cores (the report's description says which was used)
DEFAULTS = {
    "accelerator": {"seeds": "3", "steps": "400", "batches": "16-32-64-128-256-512-1024", "neg_batches": "16-32-64-128-256-512",
                    "queues": "16-48-112-240-496-1008-4080-16368"},
    "cpu": {"seeds": "2", "steps": "300", "batches": "16-32-64-128-256", "neg_batches": "16-32-64-128",
            "queues": "16-48-112-240-1008-4080"},
}


def _platform() -> str:
    import jax

    return "cpu" if jax.default_backend() == "cpu" else "accelerator"


def get_config(arg=None):
    opts = arg_options(arg, "quickstart")
    platform = opts.pop("platform", None) or _platform()
    if platform not in DEFAULTS:
        raise ValueError(f"quickstart: platform must be one of {sorted(DEFAULTS)}, got {platform!r}")
    for key, value in DEFAULTS[platform].items():
        opts.setdefault(key, value)
    budget = opts.pop("budget", "steps")
    if budget not in ("steps", "epochs"):
        raise ValueError(f"quickstart: budget must be 'steps' or 'epochs', got {budget!r}")
    batches = number_list("batches", opts.pop("batches"), int, "quickstart")
    temperatures = number_list("temperatures", opts.pop("temperatures", "0.05-0.1-0.5"), float, "quickstart")
    seeds = number("seeds", opts.pop("seeds"), int, "quickstart")
    steps = number("steps", opts.pop("steps"), int, "quickstart")
    epochs = number("epochs", opts.pop("epochs", "40"), float, "quickstart")
    queues_text = opts.pop("queues")
    queues = number_list("queues", queues_text, int, "quickstart") if queues_text else ()
    neg_batches = number_list("neg_batches", opts.pop("neg_batches"), int, "quickstart")
    neg_batch = number("neg_batch", opts.pop("neg_batch", "16"), int, "quickstart")
    neg_temperature = number("neg_temperature", opts.pop("neg_temperature", "0.1"), float, "quickstart")
    if seeds < 1:
        raise ValueError(f"quickstart: seeds must be >= 1, got {seeds}")

    base = simclr_mnist1d.get_config()
    base.eval.at_init = False
    base.checkpoint_every = 100      # a relaunch resumes an interrupted run from its last multiple of 100 steps
    base.log_every = 50
    base.optimizer.warmup_steps = 20
    base = apply_arg(base, ",".join(f"{k}={v}" for k, v in opts.items()))

    grid = {"loss.temperature": temperatures, "seed": tuple(range(seeds))}
    if budget == "steps":
        base.steps = steps
        zipped = {"batch_size": batches}
        what = f"{steps} steps per run"
    else:  # the step count follows the batch size
        zipped = {"batch_size": batches, "steps": tuple(max(1, round(epochs * NUM_TRAIN / b)) for b in batches)}
        what = f"{epochs:g} epochs per run (steps = epochs * {NUM_TRAIN} / batch)"
    parts, analyses = (), [
        Analysis(x="batch_size", y="eval/knn_accuracy", group="loss.temperature", complement=True,
                 where="not moco.enabled"),
        Analysis(x="batch_size", y="eval/linear_probe_accuracy", group="loss.temperature", complement=True,
                 where="not moco.enabled"),
    ]
    description = (f"Defaults of the {platform} platform ({', '.join(f'{k}={v}' for k, v in DEFAULTS[platform].items())}"
                   + (": chosen to keep the job under 10 minutes on 2 CPU cores; an accelerator runs 3 seeds and "
                      "the larger grid" if platform == "cpu" else "") + "). "
                   f"Part 1, SimCLR (NT-Xent) on MNIST-1D: batch size {list(batches)} x temperature "
                   f"{list(temperatures)}, {what}, {seeds} seed(s) per point. Downstream error = 1 - accuracy of a "
                   f"kNN classifier (k={base.eval.knn_k}) and a linear probe on frozen backbone features.")
    if queues:
        in_batch = [(b, 0) for b in neg_batches]
        queued = [(neg_batch, q) for q in queues if (neg_batch, q) not in in_batch]
        pairs = in_batch + queued
        parts = (Part("moco", {"loss.name": "infonce", "moco.enabled": True, "loss.temperature": neg_temperature,
                               "steps": base.steps},
                      grid={"seed": tuple(range(seeds))},
                      zip={"batch_size": tuple(b for b, _ in pairs), "moco.queue_size": tuple(q for _, q in pairs)}),)
        analyses.append(Analysis(x="negatives_per_anchor", y="eval/knn_accuracy", group="negatives_from",
                                 complement=True, where="moco.enabled"))
        description += (f" Part 2, MoCo (InfoNCE, momentum key encoder m={base.moco.momentum}, tau={neg_temperature}): "
                        f"negatives per anchor n = B - 1 + Q from the batch (B in {list(neg_batches)}, Q = 0) or "
                        f"from the queue (B = {neg_batch}, Q in {list(queues)}), {seeds} seed(s) per point.")
    return Sweep(
        base=base,
        grid=grid,
        zip=zipped,
        parts=parts,
        columns={"negatives_per_anchor": "batch_size - 1 + moco.queue_size",
                 "negatives_from": "'queue' if moco.queue_size else 'batch'"},
        analyses=tuple(analyses),
        description=description,
    )
