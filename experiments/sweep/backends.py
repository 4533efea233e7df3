"""Running a sweep's programs: planning points into programs, one program in a worker, the local and SLURM
backends, and the progress bar over every run's steps."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import traceback

from experiments import stopping, train
from experiments.spec import Point
from jaxneg import rundir

BACKENDS = ("local", "slurm")


def plan(points, *, vectorize: bool = True, max_members: int = 0) -> list[list[Point]]:
    """The programs that run ``points``: with ``vectorize``, points whose configs differ only in
    :data:`experiments.train.MEMBER_FIELDS` (seed, temperature, learning rate, ...) share one
    (at most ``max_members`` each; 0 = no limit); without, one point per program. Longest first."""
    if not vectorize:
        out = [[p] for p in points]
    else:
        groups: dict = {}
        for p in points:
            groups.setdefault(train.group_key(p.config), []).append(p)
        size = max_members or len(points)
        out = [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]
    # longest first (by examples encoded), so parallel workers do not end waiting on one long program
    return sorted(out, key=lambda g: -sum(p.config.steps * p.config.batch_size for p in g))


def run_group(configs, workdirs, members_per_step: int = 0) -> list[dict]:
    """Train one group (``experiments.train.train_group``); failures are returned, not raised.

    Each member's outcome is ``{"status": "finished", "eval": {...}}`` or ``{"status":
    "failed", "error": "..."}`` (the traceback also goes to its ``error.txt``).
    """
    for w in workdirs:
        error = os.path.join(w, rundir.ERROR)
        if os.path.exists(error):  # from an earlier attempt
            os.remove(error)
    try:
        results = train.train_group(list(configs), list(workdirs), members_per_step=members_per_step)
    except Exception as e:  # a run's failure must not stop the sweep
        text, out = traceback.format_exc(), []
        for w in workdirs:
            if rundir.status(w) == "finished":  # finished before the failure (an earlier sub-program)
                out.append({"status": "finished", "eval": rundir.read_json(os.path.join(w, rundir.RESULT))["eval"]})
                continue
            os.makedirs(w, exist_ok=True)
            with open(os.path.join(w, rundir.ERROR), "w") as f:
                f.write(text)
            out.append({"status": "failed", "error": f"{type(e).__name__}: {e}"})
        return out
    return [{"status": "finished", "eval": r["eval"]} if r["status"] == "finished" else
            {"status": "failed", "error": f"non-finite loss {r['loss']} at step {r['step']} (failed.json)"}
            for r in results]


@contextlib.contextmanager
def _output_to(path):
    """Send this process's stdout and stderr (file descriptors, so C++ logs too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:  # Python-level streams too, where they are not fds 1 and 2 (pytest, notebooks)
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _worker_init():
    from absl import logging

    stopping.worker_signals()
    logging.set_verbosity(logging.WARNING)
    if os.environ.get("JAXNEG_COMPILATION_CACHE", "0") != "0":  # the command line's cache, inherited
            train.enable_compilation_cache()


def _worker_run(configs, workdirs, members_per_step=0):
    """Run a group with the process' output (warnings, XLA logs) in its first member's ``log.txt``."""
    os.makedirs(workdirs[0], exist_ok=True)
    try:
        with _output_to(os.path.join(workdirs[0], rundir.LOG)):
            return run_group(configs, workdirs, members_per_step)
    except stopping.Stop as stop:
        if multiprocessing.parent_process() is None:  # in the launcher's own process (--workers 1)
            raise
        stopping.exit_worker(stop)


# ----------------------------------------------------------------------------- backends


class _Progress:
    """One bar over the steps of every run of the sweep, fed by polling each run's ``metrics.jsonl``.

    Polling works the same for in-process runs, worker processes and cluster jobs; it moves
    every ``log_every`` steps of a run, and a finished run counts in full.
    """

    def __init__(self, points, run_dir, finished, enabled):
        self.points, self.run_dir, self.bar = points, run_dir, None
        self.done = {p.name: p.config.steps for p in points if p.name in finished}
        self.total = sum(p.config.steps for p in points)
        self.failed = 0
        if not enabled:
            return
        import threading

        from tqdm.auto import tqdm

        self._lock = threading.Lock()  # the poller and the main thread both move the bar

        # the bar keeps the terminal even while in-process runs send fds 1 and 2 to their log.txt
        self.stream = os.fdopen(os.dup(2), "w", buffering=1)
        self.bar = tqdm(total=self.total, initial=sum(self.done.values()), unit="step", dynamic_ncols=True,
                        file=self.stream, desc=f"{len(self.done)}/{len(points)} runs")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(1.0):
            self.refresh()

    def refresh(self):
        if self.bar is None:
            return
        with self._lock:
            steps = sum(self.done.get(p.name, rundir.logged_step(self.run_dir(p))) for p in self.points)
            self.bar.update(steps - self.bar.n)
            self.bar.set_description(f"{len(self.done)}/{len(self.points)} runs"
                                     + (f", {self.failed} failed" if self.failed else ""), refresh=False)

    def finished(self, point, outcome):
        if self.bar is not None:
            with self._lock:
                self.done[point.name] = point.config.steps
                self.failed += outcome["status"] != "finished"
        self.refresh()

    def close(self):
        if self.bar is None:
            return
        self._stop.set()
        self._thread.join()
        self.refresh()
        self.bar.close()
        self.stream.close()


def _group_args(group, run_dir, width):
    return [p.config for p in group], [run_dir(p) for p in group], width


def _record_group(out, group, outcomes, progress):
    for p, o in zip(group, outcomes):
        out[p.name] = o
        progress.finished(p, o)


def share_device_memory(workers: int) -> None:
    """Give each of ``workers`` processes sharing one accelerator ``0.9 / workers`` of its memory.

    XLA preallocates 75% of a GPU's memory in every process, so a second worker on the same GPU
    would find too little. Set before the workers start (they inherit the environment); a user's own
    ``XLA_PYTHON_CLIENT_MEM_FRACTION`` or ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is kept. Several
    workers help on one accelerator because a program's compilation runs on the host's CPU while
    another worker's steps run on the device; with ``--workers 1`` one process owns the device.
    """
    if workers > 1 and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ and \
            os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "").lower() not in ("false", "0"):
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / workers:.3f}"


def _run_local(groups, run_dir, workers, progress, width):
    out = {}
    if workers == 1:
        for g in groups:
            _record_group(out, g, _worker_run(*_group_args(g, run_dir, width)), progress)
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    share_device_memory(workers)
    pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    try:
        futures = {pool.submit(_worker_run, *_group_args(g, run_dir, width)): g for g in groups}
        for fut in cf.as_completed(futures):
            g = futures[fut]
            try:
                outcomes = fut.result()
            except Exception as e:  # the worker process died (killed, out of memory)
                outcomes = [{"status": "failed", "error": f"worker died: {type(e).__name__}: {e}"}] * len(g)
            _record_group(out, g, outcomes, progress)
    except stopping.Stop:  # SIGTERM the workers (they stop at their next bytecode), never wait on their queue
        pool.shutdown(wait=False, cancel_futures=True)
        killed = stopping.stop_processes(mp.active_children())
        # a worker still unwinding after the grace (a compilation on a loaded machine) was killed holding its
        # runs' locks: release them as the worker would have
        stopping.clear_dead_locks([d for g in groups for d in _group_args(g, run_dir, width)[1]], killed)
        raise
    pool.shutdown(wait=True)
    return out


def _run_submitit(groups, run_dir, workdir, cluster, params, progress, width):
    import submitit

    executor = submitit.AutoExecutor(folder=os.path.join(workdir, rundir.SUBMITIT, "%j"), cluster=cluster)
    if params:
        executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for g in groups:
            jobs.append((g, executor.submit(_worker_run, *_group_args(g, run_dir, width))))
    by_job = {id(j): g for g, j in jobs}
    out = {}
    try:
        for job in submitit.helpers.as_completed([j for _, j in jobs]):
            g = by_job[id(job)]
            try:
                outcomes = job.result()
            except Exception as e:  # the job itself failed (preempted, timed out, killed)
                outcomes = [{"status": "failed", "error": f"job {job.job_id}: {type(e).__name__}: {e}"}] * len(g)
            _record_group(out, g, outcomes, progress)
    except stopping.Stop:  # the jobs are this launch's: cancel the ones still queued or running
        for _, job in jobs:
            if not job.done():
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
        raise
    return out
