"""Repository invariants: CI runs the README's test command; the README's tables are complete and its example runs."""

import inspect
import pathlib
import re

import jax
import pytest

from jaxneg.losses import LOSSES, STREAMING
from jaxneg.samplers import SAMPLERS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_exactly():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"# 2\. install, then run the test suite.*?\n(.+?)\n```", readme, re.S)
    assert block, "README quickstart lost its test command"
    command = block.group(1).strip()
    ci_lines = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines()]
    assert command in ci_lines


def test_a_failing_suite_ends_with_the_names_and_the_end_of_each_failure(tmp_path):
    """tests/conftest.py's summary: CI's last lines name the failed tests and show the end of their output."""
    import os
    import subprocess
    import sys

    (tmp_path / "test_x.py").write_text("def test_fine():\n    pass\n\n"
                                        "def test_broken():\n    print('what it printed')\n    assert 1 == 2, 'the reason'\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-c",
                          os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_x.py")],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    tail = out.stdout.strip().splitlines()
    assert re.fullmatch(r"=+ 1 failed, 1 passed in .* =+", tail[-1]), tail[-3:]
    assert re.fullmatch(r"=+ failed: test_x.py::test_broken =+", tail[-2]), tail[-3:]
    end = "\n".join(tail[-12:])
    assert "AssertionError: the reason" in end and "what it printed" in end


def test_readme_table_lists_every_registered_loss_and_its_streaming_flag():
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \|.*\| (yes|no)[^|]*\|[^|]*\|$", readme, re.M))
    assert set(rows) == set(LOSSES.names())
    assert {name for name, s in rows.items() if s == "yes"} == set(STREAMING) == set(LOSSES.select(streams=True))
    across = set(re.findall(r"^\| `(\w+)` \|.*\| yes; across devices", readme, re.M))
    assert across == set(LOSSES.select(cross_device=True))


def test_registry_metadata_matches_each_functions_signature():
    """The one place that reads signatures against the metadata everything else relies on."""
    for name in LOSSES.names():
        e = LOSSES.info(name)
        params = inspect.signature(e.fn).parameters
        assert not e.var_keyword, f"{name}: **kwargs hides arguments (e.g. axis_name) from validation"
        assert e.streams == ("block_size" in params), name
        assert e.cross_device == ("axis_name" in params and "gather" in params), name
        assert e.extra_negatives == ("negatives" in params), name
        assert e.labels == ("labels" in params), name
        assert e.scale == ("logit_scale" if "logit_scale" in params else "temperature" if "temperature" in params
                           else None), name
        assert e.inputs in ("pair", "views", "labelled", "sampled", "teacher"), name
    for name in SAMPLERS.select(train=("per_query", "shared", "mined")):
        assert "key" in inspect.signature(SAMPLERS.get(name)).parameters or name == "hard_topk"


def test_readme_sampler_table_lists_every_registered_sampler():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Implemented samplers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `", section, re.M)
    assert set(rows) == set(SAMPLERS.names())


def test_the_library_installs_and_imports_with_jax_numpy_and_optax_alone():
    """`pip install jaxneg` pulls in jax, numpy and optax only; the experiment layer is an extra, and
    the library modules import without it (a subprocess where flax, tfds, pandas ... cannot be imported)."""
    import subprocess
    import sys
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"]}
    assert core == {"jax", "numpy", "optax"}
    assert "jaxneg[experiments]" in project["optional-dependencies"]["test"]
    blocked = ["flax", "orbax", "tensorflow_datasets", "ml_collections", "pandas", "matplotlib", "submitit",
               "mnist1d", "sklearn", "tensorboardX", "tqdm"]  # (absl comes with optax)
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import jax.numpy as jnp
import jaxneg
from jaxneg import gradcache, losses, metrics, parallel, rundir, samplers, scaling
q = jnp.ones((4, 3))
print(float(losses.infonce(q, q)), len(losses.LOSSES), len(samplers.SAMPLERS))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]


def _import_graph():
    """``{module: modules it imports at module level}`` over jaxneg/, experiments/ and benchmarks/."""
    import ast

    mods = {}
    for base in ("jaxneg", "experiments", "benchmarks"):
        for path in (ROOT / base).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    edges = {}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rpartition(".")[0]
        out = set()
        body = []
        for node in ast.parse(path.read_text()).body:  # module level and `if __name__ == "__main__":` blocks
            main = (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                    and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")
            body += node.body if main else [node]
        for node in body:  # (not inside functions)
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base] * bool(base))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != m:
                    out.add(n)
        edges[m] = out
    return edges


def test_the_import_graph_has_no_circle_and_no_import_from_a_lower_layer_to_a_higher_one():
    edges = _import_graph()
    layer = lambda m: ("jaxneg", "experiments", "benchmarks").index(m.split(".")[0])
    upward = [(a, b) for a, bs in edges.items() for b in bs if layer(b) > layer(a)]
    assert not upward, upward
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(edges[m]):
            assert state.get(n) != "open", " -> ".join(path[path.index(n):] + [n])
            if n not in state:
                visit(n)
        path.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert "experiments.spec" in edges and "jaxneg.analysis" in edges["experiments.spec"]


def test_the_experiment_layers_map_names_every_module():
    import experiments

    doc = experiments.__doc__
    names = sorted(p.stem if p.suffix == ".py" else p.name for p in (ROOT / "experiments").iterdir()
                   if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists()))
    missing = [n for n in names if f"``{n}``" not in doc and f"``{n}/``" not in doc]
    assert not missing, missing
    for package in ("train", "sweep", "tasks"):  # and the modules of its packages
        for p in (ROOT / "experiments" / package).glob("*.py"):
            if p.stem != "__init__":
                assert f"``{p.stem}``" in doc or p.stem == "__main__", (package, p.stem)
