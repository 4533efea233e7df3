"""Repository invariants: CI runs the README's test command; the README's loss table is complete."""

import pathlib
import re

from jaxneg.losses import LOSSES, STREAMING

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_exactly():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"# 2\. install, then run the test suite.*?\n(.+?)\n```", readme, re.S)
    assert block, "README quickstart lost its test command"
    command = block.group(1).strip()
    ci_lines = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_table_lists_every_registered_loss_and_its_streaming_flag():
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \|.*\| (yes|no)[^|]*\|[^|]*\|$", readme, re.M))
    assert set(rows) == set(LOSSES.names())
    assert {name for name, s in rows.items() if s == "yes"} == set(STREAMING)
