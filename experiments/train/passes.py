"""A pass: members of one program at one start step, trained to the end through the compiled step."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import stopping, tasks
from experiments.checkpoints import Checkpoints
from experiments.tasks.common import AXIS, Setup, init_params
from experiments.train.members import _member, _stack, hparams
from experiments.train.outputs import Clock, _progress, _Window, _Writer, write_result
from experiments.train.setup import evaluate, evaluate_members
from experiments.train.step import evaluates, logs, make_optimizer, make_step
from jaxneg import rundir


class Member:
    """One run of a group: its config, directory, checkpoints, lock, loss window and outcome."""

    def __init__(self, setup: Setup, config, workdir: str, echo: bool):
        self.config, self.workdir = config, workdir
        self.setup = setup.member(config)
        self.primary = jax.process_index() == 0
        self.lr = make_optimizer(config)[1]
        self.out = _Writer(workdir, self.primary, echo)
        self.window = _Window()
        self.result = self.ckpt = self.lock = self.last_ckpt = None
        self.start = 0

    def close(self) -> None:
        self.out.close()
        if self.ckpt is not None:
            self.ckpt.close()
        if self.lock is not None:
            self.lock.release()
        self.ckpt = self.lock = None


def _init_state(m: Member) -> dict:
    key = jax.random.key(m.config.seed)
    params = init_params(m.setup, key)
    tx, _ = make_optimizer(m.config)
    state = {"params": params, "opt_state": tx.init(params)}
    state.update(tasks.get(m.config.task).init_state(m.setup, params, key))
    return state


def restore(m: Member) -> dict:
    """The member's state: fresh, or from its newest good checkpoint (sets ``m.start``, the loss window)."""
    state = _init_state(m)
    m.ckpt = Checkpoints(os.path.join(m.workdir, rundir.CHECKPOINTS), m.config.keep_checkpoints, m.primary,
                         asynchronous=jax.process_count() == 1)  # (multi-host saves synchronise the processes)
    restored = m.ckpt.restore({**state, "log_window": np.zeros(2, np.float64)}, optional=("log_window",))
    if restored is None:
        return state
    m.start = m.last_ckpt = restored[0]
    state = dict(restored[1])
    window = state.pop("log_window", None)  # None: a checkpoint written without it
    if window is not None:
        m.window.load(window)
    return state


class PassPlan(NamedTuple):
    """What a pass shares with the other passes of its program: the traced loss keywords, the step it starts
    at, its time account (:class:`~experiments.train.outputs.Clock`), the compiled steps (``{members per step:
    step}``, filled on first use), whether it draws a progress bar (a run of its own), the program's name (its
    group's first member's directory) and the shapes its stacked states are padded to
    (:func:`~experiments.train.members._stack`)."""

    traced: tuple
    start: int
    clock: Clock
    compiled: dict
    bar: bool = False
    name: str = ""
    pad_to: object = None


def run_pass(setup: Setup, members: list, states: list, plan: PassPlan) -> None:
    """Train ``members`` (all at step ``plan.start``) to the end as one pass; sets each ``m.result``.

    The loop: refresh (host-side task state), step, log, checkpoint, evaluate, then finish; ``plan.clock``
    keeps the pass' time account, written to each result and log."""
    c, clock, start = members[0].config, plan.clock, plan.start
    for m in members:
        m.out.line(f"run {m.workdir}: " + (f"resuming from the checkpoint of step {start} of {c.steps}" if start
                                           else f"starting, {c.steps} steps")
                   + (f" (one of {len(members)} members of a vectorised group)" if len(members) > 1 else ""))
        m.out.open(start)
    with clock("evaluation"):
        init_eval = {m.workdir: evaluate(m.setup, init_params(m.setup, jax.random.key(m.config.seed)))
                     for m in members} if c.eval.at_init else {}
    with clock("setup"):
        one = Pass(setup, members, states, plan)
    wall0 = time.perf_counter()
    try:
        for step in range(start, c.steps):
            one.refresh(step)
            one.step(step)
            count = step + 1
            evaluating = evaluates(c, count)
            if not one.check(keep=0 if (logs(c, count) or count % c.checkpoint_every == 0 or evaluating) else 1):
                return  # every member failed
            if logs(c, count):  # (the step computed its diagnostics only where logs or evaluates says so)
                one.log(count)
            if count % c.checkpoint_every == 0 or count == c.steps:
                with clock("checkpoints"):
                    one.checkpoint(count)
            if evaluating and count != c.steps:
                with clock("evaluation"):
                    one.evaluate(count)
        one.finish(time.perf_counter() - wall0, init_eval)
    finally:
        one.close()


class Pass:
    """The device side of :func:`run_pass`: the members' stacked state, their hyperparameters, the
    compiled step, and which members are still active."""

    def __init__(self, setup: Setup, members: list, states: list, plan: PassPlan):
        c = members[0].config
        self.name = plan.name or os.path.basename(members[0].workdir)
        self.clock, self.compiled = plan.clock, plan.compiled
        self.setup, self.members, self.config = setup, members, c
        self.task = tasks.get(c.task)
        self.replicated = NamedSharding(setup.mesh, P())
        self.batch_sharding = NamedSharding(setup.mesh, P(None, AXIS))
        self.shapes = [jax.tree.map(lambda x: np.zeros(np.shape(x), bool), s) for s in states]  # each member's own
        self.pad_to = plan.pad_to
        self.states = jax.device_put(_stack(states, plan.pad_to), self.replicated)
        self.hps = jax.device_put(_stack([hparams(m.config, plan.traced) for m in members]), self.replicated)
        self.consts = jax.device_put(self.task.consts(setup), self.replicated)
        self.bar = _progress(c, plan.start) if plan.bar else None
        self.active = list(range(len(members)))
        self.metrics = None
        self.unchecked = []  # (step, losses) dispatched, not yet read
        self.t0, self.steps_in_window = time.perf_counter(), 0

    def refresh(self, step: int) -> None:
        """Host-side task updates (the mined index) when the task's schedule says so, member by member."""
        every = self.task.refresh_every(self.config)
        if step > 0 and every and step % every == 0:
            out = [self.task.refresh(m.setup, _member(self.states, i, self.shapes[i]), step)
                   for i, m in enumerate(self.members)]
            self.states = jax.device_put(_stack(out, self.pad_to), self.replicated)

    def step(self, step: int) -> None:
        """Dispatch one step of every member (asynchronously: :meth:`check` reads its losses)."""
        with self.clock("data"):
            by_seed = {seed: self.task.host_batch(self.setup, seed, step) for seed in {m.config.seed for m in self.members}}
            batch = _stack([by_seed[m.config.seed] for m in self.members])  # members of one seed share its batch
            batch = jax.tree.map(lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)
        args = (self.states, batch, jnp.int32(step), self.consts, self.hps)
        size = len(self.members)
        if size not in self.compiled:
            with self.clock("compile"):
                self.compiled[size] = make_step(self.setup.member(self.config), [m.config for m in self.members]
                                                ).lower(*args).compile()
        with self.clock("steps"):
            self.states, self.metrics = self.compiled[size](*args)
        self.unchecked.append((step, self.metrics["loss"]))

    def check(self, keep: int = 0) -> bool:
        """Read the losses of the dispatched steps but the newest ``keep``; a member whose loss is not
        finite stops alone. False: no member is left.

        With ``keep=1`` the host reads step ``t - 1``'s losses while step ``t`` runs, and prepares step
        ``t + 1``'s batch meanwhile: the device never waits on the host between steps. The loop reads
        every loss (``keep=0``) before it logs, checkpoints or evaluates, so a checkpoint never holds
        a step whose loss was not seen to be finite.
        """
        with self.clock("steps"):
            while len(self.unchecked) > keep:
                step, loss = self.unchecked.pop(0)
                losses = np.asarray(loss, np.float64)
                for i in list(self.active):
                    if not np.isfinite(losses[i]):
                        _fail(self.members[i], step, losses[i])
                        self.active.remove(i)
                    else:
                        self.members[i].window.add(float(losses[i]))
                self.steps_in_window += 1
                if self.bar is not None:
                    self.bar.update(1)
        return bool(self.active)

    def log(self, count: int) -> None:
        """Each active member's mean loss since the last log line, learning rate, gradient norm, rate."""
        rate = self.steps_in_window / (time.perf_counter() - self.t0)
        grad_norm = np.asarray(self.metrics["grad_norm"])
        temps = np.asarray(self.metrics["temperature"]) if "temperature" in self.metrics else None
        for i in self.active:
            m = self.members[i]
            row = {"step": count, "loss": m.window.take(), "learning_rate": float(m.lr(count - 1)),
                   "grad_norm": float(grad_norm[i]), "steps_per_sec": rate}
            if temps is not None:
                row["temperature"] = float(temps[i])
            diagnostics = self.diagnostics(i)
            row.update({f"diag/{k}": v for k, v in diagnostics.items()})
            m.out.row(row)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{row['loss']:.4f}")
            else:  # no bar (sweeps, logs): one line per logged step instead
                norm = (f"  mean norm {diagnostics['embedding_mean_norm']:.3f}" if "embedding_mean_norm" in diagnostics
                        else "")
                m.out.line(f"step {count}/{self.config.steps}  loss {row['loss']:.4f}  lr {row['learning_rate']:.3g}"
                           f"{norm}  {rate:.1f} steps/s")
        self.t0, self.steps_in_window = time.perf_counter(), 0

    def checkpoint(self, count: int) -> None:
        """Each active member's state and loss window at step ``count``, written in the background
        (:class:`~experiments.checkpoints.Checkpoints` ``asynchronous``) from a host copy of the state."""
        host = jax.tree.map(lambda x: np.array(x, copy=True), jax.device_get(self.states))  # never a view of a
        # device buffer that the next step (which donates the states) may reuse
        with stopping.critical():  # a stop waits for the members' checkpoints of this step
            for i in self.active:
                m = self.members[i]
                m.ckpt.save(count, {**_member(host, i, self.shapes[i]), "log_window": m.window.array()})
                m.last_ckpt = count

    def diagnostics(self, i: int) -> dict:
        """Member ``i``'s step diagnostics at the last step (the task's ``extra["diagnostics"]``: the
        negatives' class overlap, the bank's fill and age), reported with each evaluation."""
        return {k[len("diag/"):]: float(np.asarray(v)[i]) for k, v in (self.metrics or {}).items()
                if k.startswith("diag/")}

    def evaluate(self, count: int) -> None:
        """A mid-run evaluation of each active member, logged at step ``count``."""
        evals = evaluate_members([m.setup for m in self.members], self.states["params"])
        for i in self.active:
            metrics = {**evals[i], **self.diagnostics(i)}
            self.members[i].out.row({"step": count, **{f"eval/{k}": v for k, v in metrics.items()}})

    def finish(self, wall: float, init_eval: dict) -> None:
        """The final evaluation and ``result.json`` of each active member."""
        c = self.config
        finals = {}
        with self.clock("evaluation"):
            evals = evaluate_members([m.setup for m in self.members], self.states["params"])
            for i in self.active:
                finals[i] = {**evals[i], **self.diagnostics(i)}
        with self.clock("checkpoints"):  # the last one was written while the final evaluation ran
            for i in self.active:
                self.members[i].ckpt.wait()
        account = self.clock.account()
        for i in self.active:
            m = self.members[i]
            params = _member(self.states["params"], i)
            final = finals[i]
            m.out.row({"step": c.steps, **{f"eval/{k}": v for k, v in final.items()}})
            m.out.line(f"program of {len(self.members)} member(s), " + self.clock.line())
            result = {"status": "finished", "steps": c.steps, "eval": final, "time_account": account,
                      "program": self.name, "pass": os.path.basename(self.members[0].workdir),
                      "final_loss": rundir.last_loss(m.workdir) if m.primary else None,
                      "num_devices": self.setup.mesh.size,
                      "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
                      "wall_seconds": wall, "members": len(self.members), "resumed_from": self.members[0].start or None}
            if m.workdir in init_eval:
                result["init_eval"] = init_eval[m.workdir]
            with stopping.critical():
                if m.primary:
                    write_result(m.workdir, result)
                m.result = result
            m.out.line("finished: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items() if isinstance(v, float)))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fail(m: Member, step: int, loss: float) -> None:
    """Stop member ``m`` alone at ``step``, its loss not finite: ``failed.json`` and its result say so."""
    failure = {"step": step, "loss": str(loss), "last_checkpoint": m.last_ckpt}
    m.result = {"status": "failed", "error": "non_finite_loss", **failure}
    if m.primary:
        rundir.write_json(os.path.join(m.workdir, rundir.FAILED), {"status": "non_finite_loss", **failure})
    m.out.line(f"error: loss is {loss} at step {step}; stopped. Last good checkpoint: step {m.last_ckpt}")
