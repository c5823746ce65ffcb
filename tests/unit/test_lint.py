"""The tree stays ruff-clean (lint and format) and both packages stay mypy --strict clean (CI runs these)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_ruff_clean():
    result = run("ruff", "check", ".", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_clean():
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_everywhere():
    result = run("mypy", "--strict", "stigmer", "statemachine")
    assert result.returncode == 0, result.stdout + result.stderr
