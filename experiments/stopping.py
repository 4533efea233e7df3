"""Stopping on request and one launch per directory: :class:`Stop`, :func:`on_signals`, :func:`critical`, :class:`Lock`.

**Signals.** Inside :func:`on_signals` (the command lines' main thread), SIGINT (Ctrl-C, to
the process or its whole group) and SIGTERM (``kill``, ``timeout``, a scheduler's
preemption) raise :class:`Stop` in the main thread, at the next Python bytecode: a training
loop unwinds through its ``finally`` blocks (files closed, the finished runs' results and the
written checkpoints left in place) and the command line exits with ``128 + signal``: 130
for SIGINT, 143 for SIGTERM. :class:`Stop` derives from ``BaseException``, so the
``except Exception`` that records one run's failure and goes on to the next never swallows
it. Inside :func:`critical` (a checkpoint or a result being written) a signal waits until the
block ends, so a stop never leaves half a step's files.

**Worker processes** (``experiments.sweep --workers N``) call :func:`worker_signals`: they
ignore SIGINT, which Ctrl-C sends to the whole process group, and leave the decision to
the launcher; the launcher stops them with SIGTERM, which raises :class:`Stop` in them.

**Lock.** :class:`Lock` holds ``<dir>/lock`` (``fcntl.flock`` on the open file, which the
kernel releases when the holder dies, even by SIGKILL) with the holder's process id and
host written in it. A second launch into the same directory fails at once with
:class:`Busy`, naming them. A lock file left by a process that is gone is taken over with a
warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import warnings

from jaxneg import rundir

SIGNALS = (signal.SIGINT, signal.SIGTERM)
LOCK = rundir.LOCK


class Stop(BaseException):
    """A stop was asked for with ``signum``; ``exit_code`` is the shell's ``128 + signum`` (130, 143)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")


_pending: list = []   # signals received inside critical(), raised when it ends
_depth = [0]          # critical() nesting


def _handler(signum, frame):
    if _depth[0]:
        _pending.append(signum)
        return
    raise Stop(signum)


@contextlib.contextmanager
def on_signals():
    """SIGINT and SIGTERM raise :class:`Stop` in the main thread while the block runs (a no-op
    outside the main thread, where Python cannot install signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _pending.clear()


@contextlib.contextmanager
def critical():
    """A block that a signal does not interrupt: :class:`Stop` is raised when it ends instead."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if not _depth[0] and _pending:
            signum = _pending[0]
            _pending.clear()
            raise Stop(signum)


def worker_signals() -> None:
    """For a worker process: ignore SIGINT (the launcher decides), raise :class:`Stop` on the first
    SIGTERM and ignore the later ones (the pool may send its own while the worker unwinds). The
    worker's task catches the :class:`Stop` and calls :func:`exit_worker`."""
    def once(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _handler(signum, frame)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, once)


def exit_worker(stop: Stop) -> None:
    """End a stopped worker process now, its task unwound (files closed, locks released), instead of
    handing the stop back to a pool that is being shut down."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(stop.exit_code)


def stop_processes(processes, grace: float = 5.0) -> list[int]:
    """SIGTERM each live process, wait up to ``grace`` seconds in all, then SIGKILL any left and wait for
    it to be gone (a process with a large heap can take seconds to exit on a loaded machine); returns the
    pids that had to be killed (their locks were not released: :func:`clear_dead_locks`)."""
    processes = [p for p in processes if p.is_alive()]
    for p in processes:
        with contextlib.suppress(ProcessLookupError, OSError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    killed = []
    for p in processes:
        if p.is_alive():
            killed.append(p.pid)
            p.kill()
            p.join(30.0)
    return killed


def clear_dead_locks(directories, pids) -> list[str]:
    """Release the locks of ``directories`` that processes ``pids`` held when they were killed (a killed
    process releases its ``flock`` but cannot empty the file): each such file is emptied under the lock, as
    a clean release leaves it. Returns the directories cleared."""
    cleared, pids = [], set(pids)
    for d in directories:
        path = os.path.join(d, LOCK)
        if not pids or not os.path.exists(path):
            continue
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a live process: not ours to clear
                continue
            try:
                f.seek(0)
                holder = json.loads(f.read() or "{}")
                if holder.get("pid") in pids:
                    f.seek(0)
                    f.truncate()
                    f.flush()
                    cleared.append(d)
            except ValueError:
                pass
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    return cleared


class Busy(RuntimeError):
    """The directory is locked by another live launch."""


class Lock:
    """``with Lock(directory, what):`` holds ``directory/lock`` or raises :class:`Busy` naming the holder."""

    def __init__(self, directory: str, what: str = "launch"):
        self.directory, self.what = os.path.abspath(directory), what
        self.path = os.path.join(self.directory, LOCK)
        self._file = None

    def holder(self) -> dict:
        """The recorded holder ``{"pid", "host", "since", "what"}`` (empty if none is recorded)."""
        try:
            with open(self.path) as f:
                return json.loads(f.read() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "Lock":
        os.makedirs(self.directory, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            h = self.holder()
            raise Busy(f"{self.directory} is in use by {h.get('what', 'another launch')} (process {h.get('pid', '?')} "
                       f"on host {h.get('host', '?')} since {h.get('since', '?')}); wait for it to finish, stop it, "
                       f"or use another directory") from None
        old = self.holder()
        host = socket.gethostname()
        if old.get("pid") and old.get("pid") != os.getpid():  # flock succeeded: its holder is gone
            warnings.warn(f"{self.path}: taking over the lock left by process {old['pid']} on host "
                          f"{old.get('host', '?')} (since {old.get('since', '?')}), which no longer holds it",
                          stacklevel=2)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": host, "what": self.what,
                            "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):  # an empty file: released cleanly, nothing to take over
            self._file.seek(0)
            self._file.truncate()
            self._file.flush()
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def exit_stopped(stop: Stop, resume: str) -> None:
    """Print the one line a stopped command leaves (how to resume) and exit with ``stop.exit_code``."""
    print(f"{stop}; finished runs and checkpoints are kept. Resume with: {resume}", file=sys.stderr, flush=True)
    sys.exit(stop.exit_code)
