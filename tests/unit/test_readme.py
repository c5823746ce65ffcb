"""The README's quick start stays true: two commands, and CI runs the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's Quick start needs a ```bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_commands():
    assert len(quick_start()) == 2


def test_ci_runs_the_readme_test_command():
    test_command = quick_start()[1]
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, f".ci/run must run `{test_command}` verbatim"


def test_readme_diagram_matches_the_machine():
    from statemachine import TRANSITIONS

    text = (ROOT / "README.md").read_text()
    for edge in TRANSITIONS:
        for source in edge.sources:
            assert f"{source.name} --> {edge.dest.name}: {edge.trigger}" in text
