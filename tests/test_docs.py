"""README.md and docs/: every Python example runs as written, every link stays inside the repository."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = "# not run:"


def python_blocks(path):
    """``(first line number, code)`` of each fenced ``python`` block of a Markdown file (indented ones too)."""
    text = path.read_text()
    out = []
    for m in re.finditer(r"^( *)```python\n(.*?)^\1```", text, re.S | re.M):
        indent = len(m.group(1))
        code = "\n".join(line[indent:] for line in m.group(2).splitlines())
        out.append((text[:m.start()].count("\n") + 2, code))
    return out


BLOCKS = [(p, line, code) for p in PAGES for line, code in python_blocks(p)]


def test_the_guides_exist_and_the_readme_is_short():
    names = {p.name for p in PAGES}
    assert {"main_job.md", "configs.md", "sweeps.md", "beir.md", "devices.md", "extending.md", "design.md",
            "paper_tables.md"} <= names
    assert len((ROOT / "README.md").read_text()) <= 15_000
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("path,line,code", BLOCKS, ids=[f"{p.name}:{line}" for p, line, _ in BLOCKS])
def test_every_python_example_runs_or_says_why_not(path, line, code):
    """Each block, in a fresh interpreter from the repository root; one that cannot run here (an
    accelerator, several hosts, a user's data folder) says so on its first line."""
    first = code.strip().splitlines()[0]
    if first.startswith(NOT_RUN):
        assert len(first) > len(NOT_RUN) + 10, f"{path.name}:{line}: say why it is not run"
        return
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, f"{path.name}:{line}:\n{out.stderr[-3000:]}"


def test_links_stay_inside_the_repository():
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text and "/work/" not in text, page.name
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|#|mailto:", target):
                continue
            resolved = (page.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{page.name}: {target}"
