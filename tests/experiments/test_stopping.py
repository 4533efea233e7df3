"""Stop on SIGINT / SIGTERM within seconds (exit 130 / 143, checkpoints kept, no process left), and one
launch per directory."""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from experiments import stopping

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------- in-process pieces


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_raises_stop_with_the_shell_exit_code(sig, code):
    with pytest.raises(stopping.Stop) as e:
        with stopping.on_signals():
            os.kill(os.getpid(), sig)
            for _ in range(10**6):  # the handler runs at the next bytecode
                pass
    assert e.value.exit_code == code and e.value.signum == sig
    assert signal.getsignal(sig) is not stopping._handler  # the handlers are restored


def test_a_signal_inside_a_critical_block_waits_for_its_end():
    done = []
    with pytest.raises(stopping.Stop):
        with stopping.on_signals():
            with stopping.critical():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(10**5):
                    pass
                done.append("the checkpoint")  # still runs
            done.append("the next step")  # never runs
    assert done == ["the checkpoint"]


def test_stop_is_not_swallowed_by_except_exception():
    with pytest.raises(stopping.Stop):
        try:
            raise stopping.Stop(signal.SIGINT)
        except Exception:  # noqa: BLE001  (the sweep's per-run failure handler)
            pytest.fail("Stop was caught as an ordinary failure")


def test_a_second_lock_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    with stopping.Lock(str(tmp_path), "experiments.sweep"):
        with pytest.raises(stopping.Busy, match=rf"in use by experiments.sweep \(process {os.getpid()} on host "):
            stopping.Lock(str(tmp_path)).acquire()  # another open file: flock refuses it even in this process
    assert (tmp_path / "lock").read_text() == ""  # a clean release leaves nothing to take over
    # a holder that died (SIGKILL: the kernel dropped its flock, its record stayed)
    (tmp_path / "lock").write_text(json.dumps({"pid": 999999999, "host": "gone", "since": "earlier"}))
    with pytest.warns(UserWarning, match="taking over the lock left by process 999999999 on host gone"):
        lock = stopping.Lock(str(tmp_path)).acquire()
    assert json.load(open(tmp_path / "lock"))["pid"] == os.getpid()
    lock.release()


def _hold_lock_ignoring_sigterm(directory, ready):
    """A worker that a stop's grace cannot end: it holds a run's lock and ignores SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stopping.Lock(directory, "a stubborn worker").acquire()
    ready.set()
    time.sleep(600)


def test_a_worker_killed_after_the_grace_has_its_locks_released_by_the_launcher(tmp_path):
    """A worker still unwinding when the stop's grace ends (a compilation on a loaded machine) is killed
    holding its runs' locks; the launcher empties them, as the worker's own release would (the race that
    failed 1 of 20 stress runs of the sigint-to-the-launcher stop)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    held, other = tmp_path / "held", tmp_path / "other"
    p = ctx.Process(target=_hold_lock_ignoring_sigterm, args=(str(held), ready))
    p.start()
    assert ready.wait(60)
    live = stopping.Lock(str(other), "a live launch").acquire()  # held by this process: never cleared
    try:
        killed = stopping.stop_processes([p], grace=0.2)
        assert killed == [p.pid] and not p.is_alive()
        assert json.loads((held / "lock").read_text())["pid"] == p.pid  # what a kill leaves
        assert stopping.clear_dead_locks([str(held), str(other)], killed + [os.getpid()]) == [str(held)]
        assert (held / "lock").read_text() == "" and (other / "lock").read_text() != ""
    finally:
        live.release()


def test_a_run_directory_in_use_is_refused_by_train(tmp_path):
    from experiments import config_lib, train
    from tests.experiments.helpers import config

    with stopping.Lock(str(tmp_path), "another launch"):
        with pytest.raises(config_lib.ConfigError, match=f"in use by another launch \\(process {os.getpid()}"):
            train.train(config("simclr_mnist1d"), str(tmp_path))
    assert not (tmp_path / "config.json").exists()


# ----------------------------------------------------------------------------- the command lines, end to end

# Every process of the command (launcher and spawned workers alike) imports sitecustomize first; when
# JAXNEG_TEST_SIGNAL is set, the first checkpoint saved in a process sends the signal, at the same point of
# every run, with no polling and no sleep: "group" = Ctrl-C in a terminal (SIGINT to the whole process
# group), "parent" = to the launcher alone (a worker's parent), "self" = to this process.
_SITECUSTOMIZE = """
import os, signal, time
if os.environ.get("JAXNEG_TEST_SIGNAL"):
    from experiments.checkpoints import Checkpoints
    _save = Checkpoints.save
    def save(self, *a, **k):
        out = _save(self, *a, **k)
        flag = os.path.join(os.environ["JAXNEG_TEST_DIR"], "signalled")
        try:
            fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # once per command
        except FileExistsError:
            return out
        os.write(fd, str(time.time()).encode()); os.close(fd)
        target, name = os.environ["JAXNEG_TEST_SIGNAL"].split(":")
        sig = getattr(signal, name)
        if target == "group":
            os.killpg(os.getpgid(0), sig)
        else:
            os.kill(os.getppid() if target == "parent" else os.getpid(), sig)
        return out
    Checkpoints.save = save
"""

_SWEEP = """
from tests.experiments.helpers import small_sweep

def get_config(arg=None):
    # two programs of 6 steps (checkpoints every 2): the first checkpoint comes long before the end
    return small_sweep(grid={"seed": (0, 1)}, zip={"batch_size": (8,), "steps": (6,)}, analyses=())
"""


_PR_SET_CHILD_SUBREAPER = 36  # prctl(2): orphaned descendants are re-parented to this process, not to init


@contextlib.contextmanager
def _subreaper():
    """While the block runs, this process adopts the orphans of its descendants, so it can wait for them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _wait_for_group(pgid, limit=120.0):
    """Wait (blocking, no polling) until every process of group ``pgid`` has exited and been reaped; the
    names of those still running after ``limit`` seconds, which are then killed (a watchdog, not a
    clock the test reads: on a quiet machine the group is gone within a second)."""
    left = []

    def running():
        ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(pgid)], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if line.split()[1:2] and not line.split()[1].startswith("Z")]

    def watchdog():
        left.extend(running())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    timer = threading.Timer(limit, watchdog)
    timer.start()
    try:
        while True:
            try:
                os.waitid(os.P_PGID, pgid, os.WEXITED)
            except ChildProcessError:  # no child of ours is left in the group ...
                return left or running()  # ... nor any process that is not ours (a detached parent's child)
    finally:
        timer.cancel()


def _launch(tmp_path, target, args):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(_SITECUSTOMIZE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), ROOT]), "JAXNEG_TEST_SIGNAL": target,
           "JAXNEG_TEST_DIR": str(tmp_path)}
    with _subreaper():
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        ended = time.time()
        # every process the command started exits by itself (multiprocessing's resource tracker, say, exits
        # when the launcher's end of its pipe closes, just after the launcher): as their subreaper, this
        # process waits for each of them, however loaded the machine is
        left = _wait_for_group(proc.pid)
    signalled = float((tmp_path / "signalled").read_text())
    assert not left, f"still running 120 s after the command exited: {left}"
    return proc.returncode, err, ended - signalled


def _sweep_args(tmp_path, workers):
    (tmp_path / "stop_sweep.py").write_text(_SWEEP)
    return ["experiments.sweep", "--config", str(tmp_path / "stop_sweep.py"), "--workdir", str(tmp_path / "s"),
            "--workers", str(workers), "--vectorize=false", "--progress=false", "--baselines=false"]


@pytest.mark.slow
@pytest.mark.parametrize("target,code,workers", [("group:SIGINT", 130, 2), ("parent:SIGINT", 130, 2),
                                                 ("parent:SIGTERM", 143, 2), ("self:SIGINT", 130, 1)],
                         ids=["ctrl-c-2-workers", "sigint-to-the-launcher", "sigterm-to-the-launcher",
                              "ctrl-c-in-process"])
def test_a_sweep_stops_within_seconds_and_keeps_its_checkpoints(tmp_path, target, code, workers):
    rc, err, seconds = _launch(tmp_path, target, _sweep_args(tmp_path, workers))
    assert rc == code, err[-3000:]
    assert seconds < 10, seconds
    assert "Resume with: the same command" in err and "Traceback" not in err, err[-3000:]
    runs = tmp_path / "s" / "runs"
    steps = [s for r in os.listdir(runs) if os.path.isdir(runs / r / "checkpoints")
             for s in os.listdir(runs / r / "checkpoints") if s.isdigit()]
    assert steps, "the checkpoint written before the signal is gone"
    assert all((runs / r / "lock").read_text() == "" for r in os.listdir(runs) if (runs / r / "lock").exists())
    assert (tmp_path / "s" / "lock").read_text() == ""


@pytest.mark.slow
def test_train_stops_on_sigterm_within_seconds(tmp_path):
    from tests.experiments.test_reliability import _args

    args = ["experiments.train", *_args(tmp_path / "run")]
    rc, err, seconds = _launch(tmp_path, "self:SIGTERM", args)
    assert rc == 143 and seconds < 10, err[-3000:]
    assert "stopped by SIGTERM" in err and "Resume with" in err and "Traceback" not in err, err[-3000:]
    assert os.listdir(tmp_path / "run" / "checkpoints")
    assert not (tmp_path / "run" / "result.json").exists()
