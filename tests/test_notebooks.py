"""The notebooks run end to end (on the session's small sweep) and are stored without outputs."""

import os
import pathlib
import tempfile

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(path):
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # the kernel talks over unix sockets in a directory of its own: the default tcp transport picks five
    # ports by binding port 0 and closing it, and any other process of the suite can take one before the
    # kernel binds it (the kernel then dies at start)
    with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "k"))
        NotebookClient(nb, km=km, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def text(nb):
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def test_both_notebooks_exist_and_are_stored_without_outputs():
    assert {p.name for p in NOTEBOOKS} == {"scaling_analysis.ipynb", "losses_tour.ipynb"}
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{p.name}: strip the outputs"


@pytest.mark.slow
@pytest.mark.optimized
def test_scaling_analysis_runs_on_a_small_sweep(finished_sweep, monkeypatch):
    d, summary = finished_sweep
    monkeypatch.setenv("JAXNEG_SWEEP", d)
    monkeypatch.setenv("JAXNEG_BOOTSTRAP", "8")
    out = text(execute(ROOT / "notebooks" / "scaling_analysis.ipynb"))
    assert "6 finished runs; swept fields: ['batch_size', 'loss.temperature', 'steps']" in out
    assert "alpha_low" in out and out.count("<Figure") >= 3
    assert "best loss.temperature per batch_size" in out
    assert "45 runs, 5 budgets; true a = 0.452" in out and "3 parametric" in out  # the three approaches


@pytest.mark.slow
def test_losses_tour_runs():
    out = text(execute(ROOT / "notebooks" / "losses_tour.ipynb"))
    assert "hard_negative(beta=0) == debiased, debiased(tau_plus=0) == ntxent: ok" in out
    shares = eval(out.split("{0.05:", 1)[1].split("}", 1)[0].join(["{0.05:", "}"]))
    # Wang & Liu: the smaller the temperature, the more of the gradient goes to the hardest negatives
    assert all(a > b for a, b in zip(list(shares.values()), list(shares.values())[1:]))
