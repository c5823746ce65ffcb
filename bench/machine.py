"""Facts about the machine and the software versions, printed above the tables."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from stigmer.testing.temporal import find_temporal_binary


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _temporal_cli() -> str:
    try:
        done = subprocess.run([find_temporal_binary(), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired, RuntimeError) as err:
        return f"unknown ({err})"
    return done.stdout.strip() or done.stderr.strip()


def _tree() -> str:
    """The commit measured, and whether the working tree differed from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def facts() -> dict[str, str]:
    return {
        "stigmer-py commit": _tree(),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "memory": _memory_gib(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "packages": ", ".join(
            f"{name} {_version(name)}" for name in ("stigmer-py", "temporalio", "grpcio", "protobuf", "transitions")
        ),
        "Temporal": _temporal_cli(),
    }


def loadavg() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "unknown"


def header(*, command: str, elapsed: float, load_before: str) -> str:
    lines = ["## Run", "", f"- command: `{command}`", f"- wall time: {elapsed / 60:.1f} min",
             f"- load average (1 min) before / after: {load_before} / {loadavg()}"]  # fmt: skip
    lines += [f"- {key}: {value}" for key, value in facts().items()]
    return "\n".join(lines) + "\n"
