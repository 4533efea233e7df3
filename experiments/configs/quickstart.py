"""The main job: batch size × temperature, and negatives per anchor at a fixed batch, with seeds and baselines.

``python -m experiments.sweep --config experiments/configs/quickstart.py --workdir runs/quickstart``

SimCLR (NT-Xent over two signal views, a 1-D CNN on MNIST-1D; :mod:`experiments.configs.simclr_mnist1d`)
in two parts, every point trained with ``seeds`` seeds (each seed its own data order, views and
initialisation; the points of one shape run as members of one vectorised program). Each encoder is
evaluated downstream (kNN and linear probe on frozen features; the InfoNCE value itself is bounded by
``log 2B`` and not comparable across batch sizes), and read against the sweep's baselines
(``baselines.json``: the raw inputs and the untrained encoder, same protocol).

1. **Batch size × temperature**: batch sizes ``B`` × temperatures ``tau``; per temperature

       error(B) = E + A · B^-alpha,      error = 1 - accuracy

   is fitted to every seed's run (:func:`jaxneg.analysis.fit_groups`), with bootstrap intervals and
   the share of their width that comes from seed noise.

2. **Negatives per anchor** ``n``, at a fixed batch ``B = neg_batch`` and ``neg_steps`` steps (so every
   ``n`` sees the same examples per step and the same encoder updates; on CPU those of part 1), from three
   sources (``negatives_from``):

   * ``subsampled``: each anchor keeps ``n`` random in-batch negatives of its ``2B - 2`` (a fresh
     subset every step; ``config.negatives.subsample``), ``n`` from 1 to the full batch;
   * ``memory``: all ``2B - 2`` in-batch negatives plus a bank of the encoder's own recent
     view embeddings (stop-gradient, FIFO; cross-batch memory, Wang et al. 2020), ``n = 2B - 2 + M``;
     the bank fills first and counts only once full and from a third of the steps on (a warm-up
     while the encoder drifts fastest, as Wang et al. start theirs; ``negatives.memory_from``), and
     never offers an anchor its own earlier embedding (``config.negatives.memory = M``);
   * ``queue``: MoCo (He et al. 2020) as its CIFAR demo runs it: InfoNCE of both views' queries
     against the other view's keys from a momentum (0.99) key encoder, the queue of its last ``n``
     keys the only negatives (``config.moco.queue_size = n >= 2B``, :data:`experiments.tasks.sources.queue.MOCO`).

   Every run centres its embeddings by the global batch mean before the loss (``model.centre``,
   the default): without it the bank and the queue collapse the encoder (BENCHMARKS.md).
   On MNIST-1D's 10 classes the anchor's own class takes 20-30 % of the negatives' softmax mass at every
   ``n``, and at 300 steps the queue's runs stay below the raw input. More classes
   (``data.config.num_classes``: the digits plus generated templates, :func:`jaxneg.data.mnist1d_templates`)
   cut that share (5-9 % at 30 classes, 1-2 % at 100) but leave no run above the raw input at this budget,
   so the main job keeps the 10 digits and its report shows the mechanism: each section's regime panels
   and the groups below a baseline (BENCHMARKS.md, "Part 2 against the class count").
   ``error(n) = E + A · n^-alpha`` is fitted per source and drawn in one figure with the baselines;
   the report says where each curve saturates and flags collapsed runs. Each run also reports the
   fraction of its negatives that share the anchor's class, the length of its mean normalised
   embedding and, for the bank and the queue, their fill, mean key age and drift
   (``eval/negatives_same_class``, ``eval/embedding_mean_norm``, ``eval/bank_fill``,
   ``eval/bank_age``, ``eval/bank_drift``).

``arg`` (``key=value,...``):
  ``budget``: ``steps`` (default; every run takes the same number of steps) or ``epochs`` (part 1:
    every run sees the same number of examples, steps = epochs · N_train / B, as in Chen et al. 2020,
    Figure 9). ``steps=`` / ``epochs=`` set the budget (default 300 steps / 40 epochs).
  ``batches``: ``16-32-64-128-256`` (``batches=`` with nothing drops part 1); ``temperatures``:
  ``0.1-0.5`` (CPU; ``0.05-0.1-0.5`` on an accelerator); ``seeds``: seeds per point; ``negatives``: the values of ``n``
  (``negatives=`` with nothing drops part 2; values up to ``2B - 2`` are subsampled, larger ones
  are the full batch plus a bank of ``n - 2B + 2 >= B`` slots, and those from ``2B`` on also a MoCo
  queue of ``n`` keys); ``sources``: ``subsampled-memory-queue`` (default) or a subset of them
  (``subsampled-memory``, ``queue``, ...); ``neg_batch``: part 2's batch; ``neg_steps``: part 2's steps (default:
  ``steps=`` when it is given, else the platform's: CPU 300, part 1's; accelerator 1,000: at 300 steps the
  MoCo queue has not learned past the raw input, at 1,000 it has, BENCHMARKS.md "Part 2 against the class
  count"); ``neg_temperature`` (0.1);
  ``platform``: ``cpu`` or ``accelerator``, whose defaults (:data:`DEFAULTS`) fill the options not
  given (default: the platform JAX runs on). Part 3: ``parts`` (``1-2-3``), ``mined`` (the values of k),
  ``samplers``, ``retrieval_steps``, ``retrieval_data`` (a BEIR folder; default the synthetic corpus) and
  ``retrieval_metric``, the y of its fits, tables and figures: ``ndcg@10`` on a BEIR folder (BEIR's metric,
  graded as trec_eval scores it), ``mrr@10`` on the synthetic corpus (``ndcg@k``, ``mrr@k``, ``recall@k``,
  ``hit@k`` with k one of the run's ``eval.ks``), ``retrieval_docs`` (the synthetic corpus' sizes, e.g.
  ``2048-16384``: an axis, 4 training queries per document, each size its own analyses). Any other
  ``field=value`` overrides the base config.

See ``BENCHMARKS.md`` for its run time and results.
"""

import re
from typing import NamedTuple

from experiments.configs.arguments import apply_arg, arg_options, number, number_list
from experiments.configs import simclr_mnist1d
from experiments.spec import Analysis, Part, Sweep
from experiments.tasks import sources

NUM_TRAIN = 4000  # MNIST-1D, num_samples=5000: 80% train
#: part 2's sources of negatives (``experiments.tasks.sources``, views), by default; ``sources=`` picks others
SOURCES = ("subsampled", "memory", "queue")

#: defaults by platform: 3 seeds and the larger grid on an accelerator; on CPU what keeps README
#: command 1 under 10 minutes on 2 cores (the report's description says which was used)
DEFAULTS = {
    "accelerator": {"seeds": "3", "steps": "400", "batches": "16-32-64-128-256-512-1024", "temperatures": "0.05-0.1-0.5",
                    "neg_batch": "256", "neg_steps": "1000", "negatives": "1-3-15-63-255-510-1022-2046-4094", "mined": "0-1-3-7-15-63",
                    "retrieval_steps": "400", "retrieval_docs": "16384-65536"},
    "cpu": {"seeds": "2", "steps": "300", "batches": "16-32-64-128-256", "temperatures": "0.1-0.5", "neg_batch": "128",
            "neg_steps": "300",
            "negatives": "1-3-15-63-254-510-1022-2046-3838", "mined": "0-1-3-7-15",
            "retrieval_steps": "100", "retrieval_docs": "16384"},
}
LEARNING_RATE = 1e-2  # tuned on CPU (BENCHMARKS.md): 2e-3, the single-run default, left B = 256 at kNN 0.53

#: part 3's sources of k negatives per query (``experiments.tasks.sources``, pairs), by default (each a Part,
#: its label the run's ``tags.part``); ``samplers=`` picks others. The oracle knows the planted duplicates, which
#: a BEIR folder has not: not by default there.
SAMPLERS = ("uniform", "hard", "filtered", "simans", "oracle")
#: part 3's generator: a fifth of the documents near-duplicates, 7 in 10 query words written as aliases no
#: document uses, a fifth of the documents held out of training as the test queries' targets; its size is the
#: ``retrieval_docs`` option (16,384 on CPU: at 2,048 the training pairs are memorised within 100 steps and no
#: mined negative can help; BENCHMARKS.md, "Part 3 in the regime where negatives matter")
RETRIEVAL_DATA = {"duplicate_rate": 0.2, "alias_rate": 0.7, "heldout_docs": 0.2, "num_docs": 2048,
                  "num_train_queries": 8192, "num_test_queries": 1024}


def retrieval(data_dir: str = "", steps: int = 100, max_k: int = 15) -> dict:
    """Part 3's run config (overrides of the base): the pairs task, a shared bag-of-tokens tower without an
    MLP (mean-pooled 128-d word embeddings: a model that fits word matching, where the MLP memorised
    documents), InfoNCE at tau 0.05 over the in-batch documents plus the first ``sampler.num_negatives`` of
    ``max_k`` negatives per query, the index re-encoded every 25 steps, learning rate 3e-2 (100 steps at
    3e-2 beat 300 at 1e-2: MRR@10 0.58 against 0.53, hard_topk k = 15). On ``RETRIEVAL_DATA``, or on the BEIR
    folder ``data_dir`` (train and test qrels)."""
    data = ({"data.name": "beir", "data.data_dir": data_dir, "data.config": {}} if data_dir else
            {"data.name": "synthetic_retrieval", "data.config": RETRIEVAL_DATA})
    return {"task": "pairs", **data, "data.train_split": "train", "data.test_split": "test", "data.view_kwargs": {},
            "model.name": "bag_of_tokens", "model.kwargs": {"dim": 128, "features": ()}, "model.embed_dim": 0,
            "loss.name": "infonce", "loss.temperature": 0.05, "loss.kwargs": {}, "batch_size": 128, "steps": steps,
            "sampler.max_negatives": max_k, "sampler.refresh_every": 25, "sampler.candidates": 64,
            "optimizer.learning_rate": 3e-2, "optimizer.warmup_steps": 10, "log_every": 25, "checkpoint_every": 50,
            "eval.ks": (1, 10, 100) if data_dir else (1, 10), "eval.max_examples": 1024}


def _platform() -> str:
    import jax

    return "cpu" if jax.default_backend() == "cpu" else "accelerator"


def _drop(opts, key) -> tuple:
    """A part that is not selected: its option is consumed and its values are none."""
    opts.pop(key)
    return ()


def _names(opts, key, default: tuple, task: str) -> tuple:
    """The registered sources of ``task`` named by option ``key`` (``a-b-c``; default ``default``) that the
    main job can set (``Source.setting``)."""
    names = tuple(opts.pop(key, "-".join(default)).split("-"))
    valid = [s.name for s in sources.of_task(task) if s.setting is not None]
    if not names or not set(names) <= set(valid):
        raise ValueError(f"quickstart: {key} must be some of {'-'.join(valid)}, got {'-'.join(names)!r}")
    return names


def _list(opts, key, kind):
    text = opts.pop(key)
    return number_list(key, text, kind, "quickstart") if text else ()


class _Options(NamedTuple):
    platform: str
    budget: str
    batches: tuple
    temperatures: tuple
    seeds: int
    steps: int
    epochs: float
    negatives: tuple
    sources: tuple
    neg_batch: int
    neg_steps: int
    neg_temperature: float
    mined: tuple
    retrieval_data: str
    retrieval_steps: int
    samplers: tuple
    retrieval_metric: str
    retrieval_docs: tuple


def _options(opts: dict) -> _Options:
    """The quickstart's own options, popped from ``opts`` (the rest override the base config), checked."""
    platform = opts.pop("platform", None) or _platform()
    if platform not in DEFAULTS:
        raise ValueError(f"quickstart: platform must be one of {sorted(DEFAULTS)}, got {platform!r}")
    if "steps" in opts and "neg_steps" not in opts:  # a budget given as steps= is part 2's too, unless it has its own
        opts["neg_steps"] = opts["steps"]
    for key, value in DEFAULTS[platform].items():
        opts.setdefault(key, value)
    budget = opts.pop("budget", "steps")
    if budget not in ("steps", "epochs"):
        raise ValueError(f"quickstart: budget must be 'steps' or 'epochs', got {budget!r}")
    selected = opts.pop("parts", "1-2-3").split("-")
    if not set(selected) <= {"1", "2", "3"} or not selected:
        raise ValueError(f"quickstart: parts must be some of 1-2-3, got {'-'.join(selected)!r}")
    retrieval_data = opts.pop("retrieval_data", "")
    o = _Options(
        platform, budget, _list(opts, "batches", int) if "1" in selected else _drop(opts, "batches"),
        number_list("temperatures", opts.pop("temperatures"), float, "quickstart"),
        number("seeds", opts.pop("seeds"), int, "quickstart"), number("steps", opts.pop("steps"), int, "quickstart"),
        number("epochs", opts.pop("epochs", "40"), float, "quickstart"),
        _list(opts, "negatives", int) if "2" in selected else _drop(opts, "negatives"),
        _names(opts, "sources", SOURCES, "views"),
        number("neg_batch", opts.pop("neg_batch"), int, "quickstart"),
        number("neg_steps", opts.pop("neg_steps"), int, "quickstart"),
        number("neg_temperature", opts.pop("neg_temperature", "0.1"), float, "quickstart"),
        _list(opts, "mined", int) if "3" in selected else _drop(opts, "mined"), retrieval_data,
        number("retrieval_steps", opts.pop("retrieval_steps"), int, "quickstart"),
        _names(opts, "samplers", tuple(s for s in SAMPLERS if not (retrieval_data and s == "oracle")), "pairs"),
        opts.pop("retrieval_metric", "ndcg@10" if retrieval_data else "mrr@10"),
        () if retrieval_data else number_list("retrieval_docs", opts.pop("retrieval_docs"), int, "quickstart"))
    if retrieval_data and opts.pop("retrieval_docs") != DEFAULTS[platform]["retrieval_docs"]:
        raise ValueError("quickstart: retrieval_docs sizes the synthetic corpus; a BEIR folder has its own")
    if o.retrieval_docs and min(o.retrieval_docs) < 256:
        raise ValueError(f"quickstart: retrieval_docs must be >= 256 documents, got {'-'.join(map(str, o.retrieval_docs))}")
    ks = retrieval(o.retrieval_data)["eval.ks"]
    if not re.fullmatch(r"(ndcg|mrr|recall|hit)@\d+", o.retrieval_metric) or \
            int(o.retrieval_metric.split("@")[1]) not in ks:
        raise ValueError(f"quickstart: retrieval_metric must be ndcg@k, mrr@k, recall@k or hit@k with k in "
                         f"{'-'.join(map(str, ks))}, got {o.retrieval_metric!r}")
    if o.mined and (min(o.mined) < 0 or len(set(o.mined)) != len(o.mined)):
        raise ValueError(f"quickstart: mined must be distinct counts >= 0, got {'-'.join(map(str, o.mined))}")
    if o.seeds < 1:
        raise ValueError(f"quickstart: seeds must be >= 1, got {o.seeds}")
    for name in ("steps", "neg_steps", "retrieval_steps"):
        if getattr(o, name) < 1:
            raise ValueError(f"quickstart: {name} must be >= 1, got {getattr(o, name)}")
    if not o.batches and not o.negatives and not o.mined:
        raise ValueError("quickstart: nothing to run (parts 1, 2 and 3 need batches=, negatives= and mined=)")
    return o


def get_config(arg=None):
    opts = arg_options(arg, "quickstart")
    o = _options(opts)
    base = simclr_mnist1d.get_config()
    base.eval.at_init = False        # the sweep's baselines.json holds the untrained encoder
    base.checkpoint_every = 100      # a relaunch resumes an interrupted run from its last multiple of 100 steps
    base.log_every = 50
    base.optimizer.warmup_steps = 20
    base.optimizer.learning_rate = LEARNING_RATE
    base.steps = o.steps
    base = apply_arg(base, ",".join(f"{k}={v}" for k, v in opts.items()))
    description = (f"Defaults of the {o.platform} platform ("
                   f"{', '.join(f'{k}={v}' for k, v in DEFAULTS[o.platform].items())}"
                   + (": chosen to keep the job under 10 minutes on 2 CPU cores; an accelerator runs 3 seeds and "
                      "the larger grid" if o.platform == "cpu" else "") + f"), learning rate {base.optimizer.learning_rate:g}. "
                   f"Downstream error = 1 - accuracy of a kNN classifier (k={base.eval.knn_k}) and a linear probe on "
                   f"frozen backbone features.")
    grid, zipped, parts, analyses = {}, {}, [], []
    for build in (_part1, _part2, _part3):
        g, z, p, a, text = build(o)
        grid, zipped = grid or g, zipped or z
        parts += p
        analyses += a
        description += text
    return Sweep(
        base=base,
        grid=grid,
        zip=zipped,
        parts=tuple(parts),
        columns=sources.COLUMNS,  # negatives_from, negatives_per_anchor: each run's source says
        analyses=tuple(analyses),
        description=description,
    )


def _part1(o: _Options):
    """Batch size x temperature: ``(grid, zip, parts, analyses, description)``."""
    if not o.batches:
        return {}, {}, [], [], ""
    grid = {"loss.temperature": o.temperatures, "seed": tuple(range(o.seeds))}
    if o.budget == "steps":
        zipped = {"batch_size": o.batches}
        what = f"{o.steps} steps per run"
    else:  # the step count follows the batch size
        zipped = {"batch_size": o.batches, "steps": tuple(max(1, round(o.epochs * NUM_TRAIN / b)) for b in o.batches)}
        what = f"{o.epochs:g} epochs per run (steps = epochs * {NUM_TRAIN} / batch)"
    analyses = [Analysis(x="batch_size", y=y, group="loss.temperature", complement=True,
                         where="task == 'views' and negatives_from == 'batch'") for y in ("eval/knn_accuracy", "eval/linear_probe_accuracy")]
    return grid, zipped, [], analyses, (f" Part 1, SimCLR (NT-Xent) on MNIST-1D: batch size {list(o.batches)} x "
                                        f"temperature {list(o.temperatures)}, {what}, {o.seeds} seed(s) per point.")


def _part2(o: _Options):
    """Negatives per anchor at a fixed batch, from each source: ``(grid, zip, parts, analyses, description)``."""
    if not o.negatives:
        return {}, {}, [], [], ""
    b, full, steps = o.neg_batch, 2 * o.neg_batch - 2, o.neg_steps
    job = sources.MainJob(batch_size=b, steps=steps)
    same = {"batch_size": b, "loss.temperature": o.neg_temperature, "steps": steps}
    parts, by_source = [], {}
    for name in o.sources:
        part, by_source[name] = _source_part(name, o.negatives, job, same, {"seed": tuple(range(o.seeds))})
        parts += [part] if part else []
    if not parts:
        raise ValueError(f"quickstart: no value of negatives={'-'.join(map(str, o.negatives))} belongs to the "
                         f"sources {list(o.sources)} at neg_batch={b}")
    control = (f"task == 'views' and negatives_from == 'subsampled' and negatives_per_anchor == {full}"
               if full in by_source.get("subsampled", ()) else "")  # the full batch: every arm's control
    analyses = [Analysis(x="negatives_per_anchor", y="eval/knn_accuracy", group="negatives_from", complement=True,
                         where="task == 'views' and negatives_from != 'batch'", control=control)]
    text = (f" Part 2, negatives per anchor n at a fixed batch B = {b} (NT-Xent, tau = "
            f"{o.neg_temperature}, {steps} steps, {o.seeds} seed(s) per point): "
            + "; ".join(f"{s} n in {by_source[s]}" for s in o.sources if by_source[s])
            + " (" + "; ".join(f"{s}: {sources.get(s).summary}" for s in o.sources if by_source[s])
            + "). Every run subtracts the global batch mean from its embeddings before the loss "
              "(model.centre=batch). The regime panels beside its figure show how the negatives' softmax mass "
              "spreads, and how much of it the anchor's own class takes at each n (with C classes about 1/C of "
              "the negatives; data.config.num_classes sets MNIST-1D's C, BENCHMARKS.md, 'Part 2 against the "
              "class count').")
    return {}, {}, parts, analyses, text


def _source_part(name: str, values, job, same: dict, grid: dict):
    """``(Part or None, the values it takes)``: the runs of source ``name`` at each of ``values`` it can give
    (``Source.setting``): its ``axis`` field zipped, its other fields on the part's base."""
    source = sources.get(name)
    settings = {n: source.setting(n, job) for n in values}
    settings = {n: v for n, v in settings.items() if v is not None}
    if not settings:
        return None, []
    rows = list(settings.values())
    fixed = {f: v for f, v in rows[0].items() if f != source.axis}
    if any({f: v for f, v in r.items() if f != source.axis} != fixed for r in rows):
        raise ValueError(f"source {name!r}: setting() must change only its axis {source.axis!r} with n")
    zipped = {source.axis: tuple(r[source.axis] for r in rows)} if source.axis else {}
    return Part(name, {**same, **fixed}, grid=grid, zip=zipped), list(settings)


def _part3(o: _Options):
    """Mined or drawn negatives per query in dense retrieval: ``(grid, zip, parts, analyses, description)``."""
    if not o.mined:
        return {}, {}, [], [], ""
    k_max, seeds = max(o.mined), {"seed": tuple(range(o.seeds))}
    job = sources.MainJob(batch_size=retrieval()["batch_size"], steps=o.retrieval_steps, views=1)
    parts = []
    for name in ("in-batch",) + o.samplers:  # k = 0 is the same run for every sampler (in-batch): run once
        base = retrieval(o.retrieval_data, o.retrieval_steps, 0 if name == "in-batch" else k_max)
        if o.retrieval_docs:  # the synthetic corpus at the (first) size: 4 training queries per document
            base["data.config"] = {**RETRIEVAL_DATA, "num_docs": o.retrieval_docs[0],
                                   "num_train_queries": 4 * o.retrieval_docs[0]}
        part, _ = _source_part(name, o.mined, job, base, seeds)
        if part and len(o.retrieval_docs) > 1:  # the corpus size as an axis: 4 training queries per document
            docs = {"data.config.num_docs": o.retrieval_docs,
                    "data.config.num_train_queries": tuple(4 * n for n in o.retrieval_docs)}
            part = Part(part.label, part.overrides, grid=part.grid, zip=[part.zip, docs] if part.zip else docs)
        parts += [part] if part else []
    analyses = []
    for n in o.retrieval_docs if len(o.retrieval_docs) > 1 else (None,):  # one analysis per corpus size
        size = "" if n is None else f" and data.config.num_docs == {n}"
        positive = f"task == 'pairs' and sampler.num_negatives > 0{size}"
        analyses.append(Analysis(x="sampler.num_negatives", y=f"eval/{o.retrieval_metric}", group="tags.part",
                                 complement=True, where=positive, n_bootstrap=100,
                                 control=f"task == 'pairs' and sampler.num_negatives == 0{size}" if 0 in o.mined
                                 else ""))
        mining = [s for s in o.samplers if "false_negative_rate" in sources.get(s).reports]
        if mining:  # (descriptive: the points, their ranking and the saturation test; no intervals)
            analyses.append(Analysis(x="sampler.num_negatives", y="eval/false_negative_rate", group="tags.part",
                                     where=f"{positive} and tags.part in {tuple(mining)!r}", n_bootstrap=0))
    where = f"the BEIR folder {o.retrieval_data}" if o.retrieval_data else (
        "synthetic_retrieval (" + ", ".join(f"{k}={v}" for k, v in RETRIEVAL_DATA.items()
                                            if k not in ("num_docs", "num_train_queries"))
        + f"; {'-'.join(map(str, o.retrieval_docs))} documents, 4 training queries per document)")
    text = (f" Part 3, k mined or drawn negatives per query in dense retrieval on {where}: the pairs task, "
            f"InfoNCE (tau 0.05) over the in-batch documents plus k in {list(o.mined)} negatives per query "
            f"from {', '.join(o.samplers)} ("
            + "; ".join(f"{s}: {sources.get(s).summary}" for s in o.samplers)
            + f"; the index re-encoded every 25 steps), a mean-pooled "
            f"128-d bag of tokens, B = 128, {o.retrieval_steps} steps at learning rate 3e-2, {o.seeds} seed(s) "
            f"per point, every k of a sampler one program (the first k of {k_max} mined or drawn); k = 0 "
            f"is in-batch only, the same run for every sampler, run once. Metrics of the test queries "
            f"against the whole corpus; the false-negative rate is the "
            f"share of the kept negatives from the positive's duplicate group.")
    return {}, {}, parts, analyses, text
