"""A run's outputs: its work directory's config check, the writer of ``metrics.jsonl``, TensorBoard and
``log.txt``, the time account, the loss window, and the one reader and writer of ``result.json``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import jax
import numpy as np

from experiments import config_lib
from jaxneg import rundir


def check_workdir(workdir: str, cj: dict) -> None:
    """A work directory that holds a run of another config is refused, naming the differing fields."""
    path = os.path.join(workdir, rundir.CONFIG)
    if not os.path.exists(path):
        return
    old = rundir.read_json(path)
    if old != cj:
        diff = rundir.config_diff(old, cj)
        raise config_lib.ConfigError(f"workdir {workdir} holds a run of a different config (fields {diff}); "
                                     f"use another workdir")


class _Writer:
    """A run's outputs: ``metrics.jsonl`` and TensorBoard (the same rows), and ``log.txt`` (progress
    lines, also to stderr with ``echo``). Only the primary process (process 0) writes."""

    def __init__(self, workdir: str, primary: bool, echo: bool):
        self.workdir, self.primary, self.echo = workdir, primary, echo
        self.jsonl = self.tb = None

    def open(self, start: int) -> None:
        """Rewind ``metrics.jsonl`` (and TensorBoard) to step ``start`` and open them for appending."""
        if self.primary:
            rundir.truncate_metrics(self.workdir, start)
            self.jsonl = open(os.path.join(self.workdir, rundir.METRICS), "a")
            self.tb = _tb_writer(self.workdir, start)

    def row(self, row: dict) -> None:
        """One logged step or evaluation ``{"step": ..., name: value, ...}``."""
        if self.jsonl is None:
            return
        self.jsonl.write(json.dumps(row, default=float) + "\n")
        self.jsonl.flush()
        for k, v in row.items():
            if k != "step":
                self.tb.add_scalar(k, v, row["step"])
        self.tb.flush()

    def line(self, text: str) -> None:
        """A progress line: appended to ``log.txt``; also to stderr for a run of its own."""
        if not self.primary:
            return
        with open(os.path.join(self.workdir, rundir.LOG), "a") as f:
            f.write(text + "\n")
        if self.echo:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        for f in (self.jsonl, self.tb):
            if f is not None:
                f.close()
        self.jsonl = self.tb = None


class Clock:
    """The time account of one program: seconds per phase, the rest (logging, host glue) as ``other``.

    ==============  ==================================================================
    ``data``        building the run (loading the dataset, the models) and each step's
                    host batch (views' inputs, stacking, transfer to the devices)
    ``setup``       initialising or restoring the members' states
    ``compile``     lowering and compiling the step (a persistent-cache hit is a load)
    ``steps``       running the steps (dispatch and the wait for their losses)
    ``evaluation``  the evaluations (at init, mid-run, final)
    ``checkpoints`` writing checkpoints
    ``other``       the rest of the program's wall time
    ==============  ==================================================================
    """

    PHASES = ("data", "setup", "compile", "steps", "evaluation", "checkpoints", "other")

    def __init__(self):
        self.t0 = time.perf_counter()
        self.seconds = dict.fromkeys(self.PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t

    def account(self) -> dict:
        """``{phase: seconds}`` so far, ``other`` being the wall time not in a phase, and ``total``."""
        total = time.perf_counter() - self.t0
        out = dict(self.seconds)
        out["other"] = max(0.0, total - sum(v for k, v in out.items() if k != "other"))
        out["total"] = total
        return out

    def line(self) -> str:
        acc = self.account()
        return (f"time: {acc['total']:.1f} s = " + ", ".join(f"{k} {acc[k]:.1f} s" for k in self.PHASES))


class _Window:
    """The running (sum, count) of the losses since the last log line. It is checkpointed with the
    state, so a resumed run logs the same mean losses as an uninterrupted one."""

    def __init__(self):
        self.sum, self.count = 0.0, 0

    def add(self, loss: float) -> None:
        self.sum, self.count = self.sum + loss, self.count + 1

    def take(self) -> float:
        """The mean since the last call; starts a new window."""
        mean = self.sum / self.count
        self.sum, self.count = 0.0, 0
        return mean

    def array(self) -> np.ndarray:
        return np.array([self.sum, self.count], np.float64)

    def load(self, a) -> None:
        self.sum, self.count = float(a[0]), int(a[1])


def _tb_writer(workdir, start):
    from tensorboardX import SummaryWriter

    return SummaryWriter(os.path.join(workdir, rundir.TENSORBOARD), purge_step=start or None)


def _progress(c, start):
    if not c.progress or jax.process_index() != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=c.steps, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)


def write_result(workdir: str, result: dict) -> None:
    """``result.json`` of a finished run (atomically): ``status``, ``steps``, ``eval`` (the final metrics and
    step diagnostics), ``time_account``, ``program``, ``pass``, ``final_loss``, ``num_devices``,
    ``num_params``, ``wall_seconds``, ``members``, ``resumed_from`` and, evaluated at init, ``init_eval``.
    The one writer; :func:`read_result` the one reader."""
    rundir.write_json(os.path.join(workdir, rundir.RESULT), result)


def read_result(workdir: str) -> dict | None:
    """The run's ``result.json`` (:func:`write_result`), or None when it has not finished."""
    path = os.path.join(workdir, rundir.RESULT)
    return rundir.read_json(path) if os.path.exists(path) else None
