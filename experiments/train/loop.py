"""The loop's entry points: :func:`train` (one run) and :func:`train_group` (members of one program)."""

from __future__ import annotations

import os

import jax
import ml_collections

from experiments import config_lib, stopping, tasks
from experiments.train.members import _padded_shapes, config_json, group_key, members, traced_loss_kwargs
from experiments.train.outputs import Clock, check_workdir, read_result
from experiments.train.passes import Member, PassPlan, restore, run_pass
from experiments.train.setup import build
from jaxneg import rundir


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or inf; ``step`` is the 0-based step that produced it."""

    def __init__(self, step: int, value: float, last_checkpoint: int | None):
        self.step, self.value, self.last_checkpoint = step, value, last_checkpoint
        super().__init__(f"loss is {value} at step {step}; stopped. Last good checkpoint: step {last_checkpoint}")


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run (or resume, or return the finished result of) the experiment in ``workdir``.

    Raises :class:`experiments.config_lib.ConfigError` for a bad config or a work directory of
    another config, before anything is created, loaded into memory or compiled, and
    :class:`NonFiniteLoss` when the loss stops being finite.
    """
    if not isinstance(config, ml_collections.ConfigDict):
        what = "a sweep config" if type(config).__name__ == "Sweep" else f"a {type(config).__name__}"
        raise config_lib.ConfigError(f"this is {what}, not a run config; run sweeps with "
                                     f"python -m experiments.sweep --config FILE --workdir DIR")
    (result,) = train_group([config], [workdir], echo=True)
    if result["status"] != "finished":
        raise NonFiniteLoss(result["step"], float(result["loss"]), result["last_checkpoint"])
    return result


def step_width(requested: int, members: int, task: str | None = None) -> int:
    """How many members one compiled step trains at once (``vmap`` over them): ``requested`` if > 0,
    else 1 on CPU and all of them on an accelerator, or on CPU too where the task says its vmapped
    step is the faster there (``Task.vmap_on_cpu``: the pairs task's bag of tokens, 1.8x faster for 8
    members of part 3 of the main job; the CNN below is the other way).

    On an accelerator one step of many small members keeps the device busy where one member at a
    time would leave it idle. On CPU the arithmetic is already the bottleneck, and XLA:CPU runs the
    vmapped step 1.3 to 1.6x slower per member than the single-member step (grouped convolutions;
    BENCHMARKS.md, "where a sweep's time goes"), so the members pass one at a time through the same compiled
    single-member step: still one compilation per program. A last pass with fewer members
    (``requested`` not dividing the members) compiles its own step.
    """
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 0:
        raise config_lib.ConfigError(f"members_per_step must be an int >= 0 (0: the platform's default), "
                                     f"got {requested!r}")
    if requested:
        return min(requested, members)
    if jax.default_backend() == "cpu" and not (task and tasks.get(task).vmap_on_cpu):
        return 1
    return members


def train_group(configs, workdirs, *, echo: bool = False, members_per_step: int = 0) -> list[dict]:
    """Train ``configs`` (equal :func:`group_key`) as members of one program; one result per member.

    Each member runs in its own ``workdirs[i]`` exactly as :func:`train` would run it alone:
    a finished member returns its ``result.json``, the others resume from their newest good
    checkpoint (members at different steps run as separate programs). A member whose loss
    stops being finite is stopped alone: its result is ``{"status": "failed", "step", "loss",
    "last_checkpoint"}`` (also ``failed.json``) and the other members go on. ``echo``: also
    print each member's progress lines to stderr.

    The step is compiled once; ``members_per_step`` members at a time pass through it
    (:func:`step_width`: 0 = 1 on CPU, all on an accelerator). Each pass is a program of its
    own in the time account (the first also carries the group's data and setup).

    Raises :class:`~experiments.config_lib.ConfigError` for a bad config, configs that cannot
    share a program, or a work directory of another config, before anything is created.
    """
    workdirs = _check_group(configs, workdirs, members_per_step)
    clock = Clock()
    with config_lib.config_errors():
        for c, w in zip(configs, workdirs):
            check_workdir(w, config_json(c))
        with clock("data"):
            setup = build(configs[0])  # validates first: bad configs fail here, before any compute
        for c in configs[1:]:
            config_lib.validate(c, setup.mesh.size)
    members = [Member(setup, c, w, echo) for c, w in zip(configs, workdirs)]
    todo = []
    for m in members:
        m.result = read_result(m.workdir)
        if m.result is None:
            todo.append(m)
    if todo:
        try:
            _train_members(setup, todo, clock, members_per_step, bar=echo and len(configs) == 1)
        finally:
            for m in todo:
                m.close()
    return [m.result for m in members]


def _check_group(configs, workdirs, members_per_step) -> list[str]:
    """The members' absolute work directories, once the group is known to be one program."""
    if len(configs) != len(workdirs) or not configs:
        raise config_lib.ConfigError(f"train_group: needs as many workdirs as configs (>= 1), got "
                                     f"{len(configs)} configs and {len(workdirs)} workdirs")
    workdirs = [os.path.abspath(w) for w in workdirs]
    if len(set(workdirs)) != len(workdirs):
        raise config_lib.ConfigError("train_group: every member needs its own workdir")
    step_width(members_per_step, len(configs))  # checked here, before anything is created
    if len({group_key(c) for c in configs}) > 1:
        other = next(c for c in configs if group_key(c) != group_key(configs[0]))
        diff = rundir.config_diff(config_json(configs[0]), config_json(other))
        fields = [m.field for m in members()]
        raise config_lib.ConfigError(f"train_group: members may differ only in {fields} and float "
                                     f"loss.kwargs; these differ in {[d for d in diff if d not in fields]}")
    return workdirs


def _train_members(setup, todo: list, clock: Clock, members_per_step: int, bar: bool) -> None:
    """Lock, restore and train the unfinished members: the members at one start step in passes of
    :func:`step_width`, through one compiled step."""
    states = {}
    for m in todo:
        if m.primary:  # only now: a config that fails validation leaves no directory
            try:  # a second launch into a run directory in use fails here, naming the holder
                m.lock = stopping.Lock(m.workdir, "experiments.train").acquire()
            except stopping.Busy as e:
                raise config_lib.ConfigError(str(e)) from None
            rundir.write_json(os.path.join(m.workdir, rundir.CONFIG), config_json(m.config))
        with clock("setup"):
            states[m.workdir] = restore(m)
    by_start = {}
    for m in todo:
        by_start.setdefault(m.start, []).append(m)
    traced = traced_loss_kwargs([m.config for m in todo])
    compiled = {}  # members per step -> the compiled step, shared by the passes
    pad_to = _padded_shapes(list(states.values()))  # every pass stacks to the same shapes
    for start, group in sorted(by_start.items()):
        size = step_width(members_per_step, len(group), group[0].config.task)
        for i in range(0, len(group), size):
            passing = group[i:i + size]
            plan = PassPlan(traced, start, clock, compiled, bar, os.path.basename(group[0].workdir), pad_to)
            run_pass(setup, passing, [states.pop(m.workdir) for m in passing], plan)
            clock = Clock()  # the next pass is a program of its own


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache (unless the user configured one), so a relaunch
    of a run or sweep loads its compiled programs instead of compiling again.

    Directory: ``$JAXNEG_COMPILATION_CACHE``, else ``~/.cache/jaxneg/xla``; ``JAXNEG_COMPILATION_CACHE=0``
    turns it off. Returns the directory in use (None: off).
    """
    where = os.environ.get("JAXNEG_COMPILATION_CACHE", "")
    if where == "0":
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    where = where or os.path.join(os.path.expanduser("~"), ".cache", "jaxneg", "xla")
    os.makedirs(where, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return where
