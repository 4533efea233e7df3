import os
import pathlib
import shutil
import tempfile

import hypothesis
import jax

# Multi-device code is tested on CPU with 8 host devices (set before JAX's first use).
jax.config.update("jax_num_cpu_devices", 8)

# Tests compile thousands of small programs and run each a few times: XLA's optimisation passes cost
# more than they save there (compile time -40%, suite -25% on 2 cores), so they are off
# (jax_disable_most_optimizations: backend optimisation level 0, no expensive LLVM passes). The
# environment variable carries it to the command-line subprocesses and xdist workers. Tests marked
# ``optimized`` (runtime-bound: the float64 L-BFGS scaling fits, the one test that trains for real)
# compile with every optimisation, in process and in their subprocesses (fixture ``_optimization``).
# The values stay within the tests' tolerances; bit-identity is only ever asserted within one setting.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
jax.config.update("jax_disable_most_optimizations", os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1")


# A directory for this test session, shared by its xdist workers and their subprocesses: the
# controller makes it before the workers start (they inherit the variable) and removes it at the end.
if "JAXNEG_TEST_SESSION" not in os.environ:
    os.environ["JAXNEG_TEST_SESSION"] = tempfile.mkdtemp(prefix="jaxneg-tests-")
    _OWNER = True
else:
    _OWNER = False
SESSION = pathlib.Path(os.environ["JAXNEG_TEST_SESSION"])


def pytest_sessionfinish(session, exitstatus):
    if _OWNER:
        shutil.rmtree(SESSION, ignore_errors=True)


# One persistent compilation cache for the session: a program compiled by one test (or worker, or
# command-line subprocess) is loaded by the next that builds the same one (tests train the same tiny
# models many times). Never the user's ~/.cache; new each session, so CI still compiles from cold.
# JAX reads the two JAX_* variables at start-up, so every subprocess shares the cache too: command lines,
# sweep workers, submitit jobs and notebook kernels (which compile the same scaling-fit solvers as the tests).
os.environ["JAXNEG_COMPILATION_CACHE"] = str(SESSION / "xla")
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["JAXNEG_COMPILATION_CACHE"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", os.environ["JAXNEG_COMPILATION_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

hypothesis.settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
hypothesis.settings.register_profile("dev", max_examples=100, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Longest first: tests marked ``slow`` (>= ~8 s on 2 cores) run before the rest, so with
    ``--maxschedchunk`` small (pyproject) xdist hands them out one by one and no long test starts last
    while the other worker sits idle. Otherwise the collection order is kept."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _optimization(request, monkeypatch):
    """Full XLA optimisation for a test marked ``optimized`` (and the subprocesses it starts)."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
    """Prepared tfds files go to a per-worker temporary directory (never ~/tensorflow_datasets)."""
    path = str(tmp_path_factory.mktemp("tfds"))
    old = os.environ.get("JAXNEG_DATA_DIR")
    os.environ["JAXNEG_DATA_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("JAXNEG_DATA_DIR", None)
    else:
        os.environ["JAXNEG_DATA_DIR"] = old


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """A small finished sweep (tests.experiments.helpers.small_sweep): ``(directory, summary)``.

    Trained once per test session: xdist workers share it through the session directory, the
    first one to arrive trains it under a file lock, the others wait for it.
    """
    import fcntl
    import json

    from experiments import sweep
    from tests.experiments.helpers import small_sweep

    d = SESSION / "shared_sweep"
    with open(SESSION / "shared_sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (d / "first_summary.json").exists():
                summary = sweep.run(small_sweep(), str(d), progress=False)
                (d / "first_summary.json").write_text(json.dumps(summary))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return str(d), json.loads((d / "first_summary.json").read_text())


#: README command 1 reduced to a few minutes' worth of seconds: all three parts, every kind of program (a
#: lighter evaluation: the tests read the report's structure, not its values)
MAIN_JOB = ("platform=cpu,steps=4,retrieval_steps=4,batches=16-32,temperatures=0.1,seeds=1,negatives=3-62,retrieval_docs=512,"
            "mined=0-1,samplers=hard,neg_batch=32,eval.probe_steps=30,eval.max_examples=512")


@pytest.fixture(scope="session")
def main_job(tmp_path_factory):
    """README command 1 reduced (:data:`MAIN_JOB`), finished once per session (shared as
    :func:`finished_sweep`): ``(directory, sweep)``."""
    import fcntl

    from experiments import sweep
    from experiments.configs import quickstart

    spec = quickstart.get_config(MAIN_JOB)
    d = SESSION / "main_job"
    with open(SESSION / "main_job.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (d / "report.md").exists():
                sweep.run(spec, str(d), progress=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return str(d), spec


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """What failed, last: after pytest's own summaries (and its durations), the name of each failed
    test and the last lines of its report (traceback, captured output), just above the closing line,
    so the end of a CI log says what broke."""
    result = yield
    failed = [r for kind in ("failed", "error") for r in terminalreporter.stats.get(kind, [])
              if getattr(r, "when", "call") in ("setup", "call", "teardown")]
    if failed:
        tr = terminalreporter
        tr.write_sep("=", f"{len(failed)} failed: the end of each report")
        for r in failed:
            tr.write_sep("-", f"{r.nodeid} ({r.when})")
            text = r.longreprtext
            for title, content in r.sections:
                text += f"\n--- {title} ---\n{content}"
            tr.write_line("\n".join(text.rstrip().splitlines()[-40:]))
        tr.write_sep("=", "failed: " + ", ".join(r.nodeid for r in failed))
    return result
