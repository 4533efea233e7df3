"""The config schema of ``experiments.train``: defaults and validation before any compute.

A config is an ``ml_collections.ConfigDict`` built by ``experiments/configs/<name>.py``'s
``get_config(arg)`` on top of :func:`base_config`. :func:`validate` checks every field a
run uses, so a typo (an unknown loss, sampler, dataset or field, a batch size the devices
cannot split) fails before data is loaded or anything is compiled, naming the valid values.
"""

from __future__ import annotations

import contextlib
import json

import ml_collections

from experiments import checks, tasks
from jaxneg import LOSSES, data, models


class ConfigError(ValueError):
    """A bad config, override or work directory, found before any compute starts.

    The command lines print its message as one line (no traceback) and exit with status 2.
    """


@contextlib.contextmanager
def config_errors():
    """``with config_errors():`` a ``ValueError`` raised inside (a check's message) becomes a
    :class:`ConfigError`, its message kept: the one place a check's error turns into a command line's."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None

#: the loss input families experiments.train can call (registry metadata ``inputs``; "teacher" needs
#: teacher scores); names come from the registries
TRAINED_INPUTS = tasks.common.TRAINED_INPUTS
#: loss arguments experiments.train sets itself from other fields (not settable in kwargs)
LOSS_RESERVED = ("temperature", "logit_scale", "logit_bias", "axis_name", "gather", "negatives", "negatives_mask", "mask", "labels",
                 "log_q", "positive_log_q", "positive_ids", "negative_ids")
OPTIMIZERS = ("adam", "adamw", "sgd", "lars")
SCHEDULES = ("constant", "cosine")


def base_config() -> ml_collections.ConfigDict:
    """Every field of a run config, with its default (SimCLR on MNIST-1D): the loop's, then each registered task's
    own (``Task.config``). (Longer than 60 lines: it is the schema, one line per field with its comment.)"""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "views"             # views: two augmentations of x; pairs: (query, document) data
    c.steps = 1000
    c.batch_size = 256           # global, over every device of every process
    c.num_devices = 0            # devices on the data mesh (0 = every device of every process)

    c.data = ml_collections.ConfigDict()
    c.data.name = "mnist1d"
    c.data.config = ml_collections.ConfigDict()   # builder-config overrides (embedded datasets)
    c.data.data_dir = ""         # "" = $JAXNEG_DATA_DIR, else ~/.cache/jaxneg/datasets (embedded) or tfds' default
    c.data.train_split = "train"
    c.data.test_split = "test"
    c.data.eval_train_split = ""     # labelled split the kNN / linear probe fit on ("" = train_split)
    c.data.max_train_examples = 0    # 0 = all

    c.model = ml_collections.ConfigDict()
    c.model.name = "cnn1d"           # jaxneg.models.BACKBONES
    c.model.kwargs = ml_collections.ConfigDict()
    c.model.head_hidden = (256,)
    c.model.embed_dim = 128          # 0 = no projection head

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "ntxent"
    c.loss.temperature = 0.1
    c.loss.learn_temperature = False   # CLIP-style learnable, clipped logit scale
    c.loss.max_logit_scale = 100.0
    c.loss.bias = -10.0              # siglip: initial logit bias (learned with learn_temperature)
    c.loss.gather = "all_gather"     # cross-device negatives: all_gather or ring
    c.loss.supervised = False        # labelled losses: class labels instead of instance ids
    c.loss.kwargs = ml_collections.ConfigDict()

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.momentum = 0.9
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 50
    c.optimizer.grad_clip = 0.0      # 0 = none
    c.optimizer.accumulate = 1       # > 1: average the gradients of this many steps per update

    c.gradcache_chunk = 0            # > 0: gradient caching with this many examples per chunk
    c.log_every = 20
    c.checkpoint_every = 200
    c.keep_checkpoints = 2
    c.eval_every = 0                 # 0 = evaluate at the end only
    c.progress = True

    c.tags = ml_collections.ConfigDict()   # labels for tables and analyses; training never reads them
    c.tags.part = ""                 # the sweep part a point belongs to (set by the sweep from Part.label)

    c.eval = ml_collections.ConfigDict()
    c.eval.at_init = False           # also evaluate the random-init encoder (result.json "init")
    c.eval.max_examples = 4000
    c.eval.knn_k = 20
    c.eval.knn_temperature = 0.07
    c.eval.probe_steps = 300
    c.eval.num_candidates = 16
    c.eval.ks = (1, 10, 100)
    for field, (_, default) in task_fields().items():  # each task's own fields, with its defaults (Task.config)
        _add_field(c, field, default)
    return c


def _add_field(c, field: str, default) -> None:
    *groups, leaf = field.split(".")
    node = c
    for g in groups:
        if g not in node:
            node[g] = ml_collections.ConfigDict()
        node = node[g]
    node[leaf] = ml_collections.ConfigDict(default) if isinstance(default, dict) else default


def task_fields() -> dict:
    """``{dotted field: (names of the tasks that declare it, default)}`` of every task's own fields (a task
    built on another declares the fields it reads of it too; they must agree on the default)."""
    out = {}
    for t in tasks.common.all_tasks():
        for f, d in tasks.common.config_fields(t).items():
            owners, default = out.get(f, ((), d))
            if default != d:
                raise ValueError(f"tasks {owners} and {t.name!r} declare config.{f} with different defaults "
                                 f"({default!r}, {d!r})")
            out[f] = (owners + (t.name,), d)
    return out


def config_json(config: ml_collections.ConfigDict) -> dict:
    """``config`` as plain JSON data (what ``config.json`` holds)."""
    return json.loads(config.to_json_best_effort())


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> ml_collections.ConfigDict:
    """Check every field against the schema of :func:`base_config`; return ``config``.

    Raises ``ValueError`` naming the field and the valid values. Cheap: builds nothing,
    loads no data, compiles nothing (the dataset name is checked against tfds' list).
    """

    unknown = _unknown_fields(config, base_config())
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    task = tasks.get(config.task)  # unknown names list the valid ones
    if not isinstance(config.seed, int) or isinstance(config.seed, bool) or not 0 <= config.seed < 2 ** 31:
        raise ValueError(f"config.seed must be an integer in [0, 2**31), got {config.seed!r}")
    checks.positive("steps", config.steps)
    checks.positive("batch_size", config.batch_size, 2)
    checks.positive("num_devices", config.num_devices, 0)
    if config.batch_size % num_devices:
        raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the {num_devices} devices")
    data.check_name(config.data.name)
    if config.data.name in data.BUILDERS:
        data.pipeline.builder_config(config.data.name, config.data.config.to_dict())
    if config.data.name == data.pipeline.BEIR:
        unknown = sorted(set(config.data.config.to_dict()) - set(data.beir.DEFAULTS))
        if unknown:
            raise ValueError(f"config.data.config: unknown field(s) {unknown} of dataset 'beir'; valid: "
                             f"{sorted(data.beir.DEFAULTS)}")
        if not config.data.data_dir:
            raise ValueError("config.data.name='beir' reads a local BEIR folder: set config.data.data_dir to it")
    checks.choice("model.name", config.model.name, sorted(models.BACKBONES))
    checks.keyword_arguments("model.kwargs", models.BACKBONES[config.model.name], config.model.kwargs, ("parent", "name"))
    loss = LOSSES.info(config.loss.name)  # unknown names list the valid ones
    if loss.inputs not in TRAINED_INPUTS:
        raise ValueError(f"config.loss.name={config.loss.name!r} is not valid here: it needs {loss.inputs} inputs, "
                         f"which experiments.train does not provide; valid values: "
                         f"{', '.join(map(repr, LOSSES.select(inputs=TRAINED_INPUTS)))}")
    checks.keyword_arguments("loss.kwargs", loss, config.loss.kwargs, LOSS_RESERVED, optional_only=True)
    checks.choice("loss.gather", config.loss.gather, ("all_gather", "ring"))
    if not config.loss.temperature > 0:
        raise ValueError(f"config.loss.temperature must be > 0, got {config.loss.temperature}")
    checks.choice("optimizer.name", config.optimizer.name, OPTIMIZERS)
    checks.choice("optimizer.schedule", config.optimizer.schedule, SCHEDULES)
    checks.positive("optimizer.accumulate", config.optimizer.accumulate)
    if config.steps % config.optimizer.accumulate:
        raise ValueError(f"config.optimizer.accumulate={config.optimizer.accumulate} must divide "
                         f"config.steps={config.steps}")
    if not config.optimizer.learning_rate > 0:
        raise ValueError(f"config.optimizer.learning_rate must be > 0, got {config.optimizer.learning_rate}")
    if config.gradcache_chunk:
        checks.positive("gradcache_chunk", config.gradcache_chunk)
        local = config.batch_size // num_devices
        if local % config.gradcache_chunk:
            raise ValueError(f"config.gradcache_chunk={config.gradcache_chunk} must divide the per-device batch {local}")
    for field in ("log_every", "checkpoint_every", "keep_checkpoints"):
        checks.positive(field, config[field])
    checks.positive("eval_every", config.eval_every, 0)
    checks.positive("eval.max_examples", config.eval.max_examples, 2)
    checks.positive("eval.num_candidates", config.eval.num_candidates, 2)
    _other_tasks_fields(config)
    task.validate(config, loss)  # the task's own rules (experiments.tasks)
    return config


def _other_tasks_fields(config) -> None:
    """Another task's own fields (``Task.config``) must keep their defaults: nothing would read them."""
    for field, (owners, default) in task_fields().items():
        if config.task in owners:
            continue
        value = get_field(config, field)
        value = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value
        if value != default:
            raise ValueError(f"config.{field}={value!r} belongs to task {' / '.join(map(repr, owners))}; with "
                             f"config.task={config.task!r} nothing reads it (leave it at {default!r})")


#: free-form keyword-argument dicts: any key may be set, and validate() checks the keys
#: against the signature of the function they are passed to
FREE = ("data.config", "model.kwargs", "loss.kwargs", "tags")


def free_groups() -> tuple:
    """:data:`FREE` and every task's own keyword groups (its ``Task.config`` fields with a dict default)."""
    return FREE + tuple(f for task in tasks.common.all_tasks() for f, default in tasks.common.config_fields(task).items()
                        if isinstance(default, dict))


def _unknown_fields(config, schema, prefix=""):
    out = []
    for key in config.keys():
        path = prefix + key
        if key not in schema:
            out.append(f"{path} (valid: {', '.join(sorted(schema.keys()))})")
        elif isinstance(schema[key], ml_collections.ConfigDict) and path not in free_groups():
            out += _unknown_fields(config[key], schema[key], path + ".")
    return out


def _suggest(name, options, prefix="") -> str:
    import difflib

    close = difflib.get_close_matches(name, [str(o) for o in options], n=1)
    if close:
        return f"; did you mean {prefix + close[0]!r}?"
    return f"; valid fields of {prefix[:-1] or 'the config'}: {', '.join(sorted(map(str, options)))}"


def get_field(config, field: str, where: str = "config"):
    """The value of the dotted ``field`` (``"optimizer.learning_rate"``) of ``config``."""
    node, path = config, []
    for part in field.split("."):
        if not (isinstance(node, (ml_collections.ConfigDict, dict)) and part in node):
            keys = list(node.keys()) if isinstance(node, (ml_collections.ConfigDict, dict)) else []
            prefix = "".join(p + "." for p in path)
            raise ValueError(f"{where}: unknown config field {field!r}" + (_suggest(part, keys, prefix) if keys else ""))
        node = node[part]
        path.append(part)
    return node


def set_field(config, field: str, value, where: str = "config") -> None:
    """Set the dotted ``field`` of ``config`` to ``value``: the one setter of every override route.

    The command line (``--config.<field>=v``), ``get_config``'s ``field=v`` argument and sweep
    axes all come here. Fields must exist (a typo raises ``ValueError`` with the closest
    name), except under the keyword-argument dicts of :data:`FREE` (``loss.kwargs.tau_plus``),
    where any key may be added; :func:`validate` then checks it against the signature of the
    function it is passed to. Lists become tuples; a value of the wrong type raises
    ``ValueError`` naming the field and both types.
    """
    *parents, leaf = field.strip().split(".")
    node = get_field(config, ".".join(parents), where) if parents else config
    parent = ".".join(parents)
    free = any(parent == f or parent.startswith(f + ".") for f in free_groups())
    if not isinstance(node, ml_collections.ConfigDict):
        raise ValueError(f"{where}: config field {parent!r} is a value ({node!r}), not a group; cannot set {field!r}")
    if leaf not in node and not free:
        raise ValueError(f"{where}: unknown config field {field!r}"
                         + _suggest(leaf, list(node.keys()), parent + "." if parent else ""))
    value = tuple(value) if isinstance(value, list) else value
    if isinstance(value, dict):
        value = ml_collections.ConfigDict(value)
    try:
        with node.unlocked():
            if free and leaf in node and node[leaf] is not None and type(node[leaf]) is not type(value):
                with node.ignore_type():  # a kwargs value may change type (e.g. int -> float)
                    node[leaf] = value
            else:
                node[leaf] = value
    except TypeError as e:
        raise ValueError(f"{where}: config field {field!r} is {type(node[leaf]).__name__} "
                         f"({node[leaf]!r}); cannot set it to {type(value).__name__} {value!r}") from e


def load_file(spec: str):
    """Import ``path/to/config.py[:arg]`` and return its ``get_config(arg)`` (a run config or a sweep)."""
    import importlib.util
    import os

    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"--config: config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"_jaxneg_config_{abs(hash(os.path.abspath(path)))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {path} defines no get_config(arg)")
    try:
        return module.get_config(arg or None)
    except ValueError as e:  # a bad arg: the config file's own message
        raise ConfigError(f"--config {spec}: {e}") from None
