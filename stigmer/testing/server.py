"""The real `stigmer` console script as processes: a server to start/stop, CLI calls to run.

StigmerServerProcess is what the pytest plugin's stigmer_server fixtures start (stigmer.testing.plugin).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stigmer.testing.eventually import wait_until
from stigmer.testing.ports import free_port


def stigmer_binary() -> str:
    """The installed console script (what users run), next to this interpreter when possible."""
    candidate = Path(sys.executable).with_name("stigmer")
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("stigmer")
    if found is None:
        raise FileNotFoundError("the `stigmer` console script is not installed: python3 -m pip install -e .")
    return found


class StigmerServerExitedError(RuntimeError):
    """The server process exited before it said it started (a refused flag, an unusable data dir)."""


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class StigmerServerProcess:
    """`stigmer server start ...` in its own process group, log captured to a file.

    Its metrics are served on free ports too (``metrics_url``: stigmer's, ``temporal_metrics_url``:
    the Temporal SDK's), so that servers side by side never fight over the defaults; an ``extra``
    ``--metrics-address none`` (or another address) wins, and the URLs then say nothing.
    """

    def __init__(
        self, *, data_dir: Path, temporal: str, extra: list[str] | None = None, health_interval: float = 1.0
    ) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.metrics_address = f"127.0.0.1:{free_port()}"
        self.temporal_metrics_address = f"127.0.0.1:{free_port()}"
        self.data_dir = data_dir
        self.temporal = temporal
        self.log_path = data_dir / "server.out"
        self._args = [
            stigmer_binary(), "server", "start",
            "--address", self.address,
            "--temporal-host-port", temporal,
            "--data-dir", str(data_dir),
            "--health-interval", str(health_interval),
            "--metrics-address", self.metrics_address,
            "--temporal-metrics-address", self.temporal_metrics_address,
            *(extra or []),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def metrics_url(self) -> str:
        """Where its ``/metrics`` is (stigmer_*)."""
        return f"http://{self.metrics_address}/metrics"

    @property
    def temporal_metrics_url(self) -> str:
        """Where the Temporal SDK's ``/metrics`` is (temporal_*)."""
        return f"http://{self.temporal_metrics_address}/metrics"

    def start(self) -> StigmerServerProcess:
        """Start (or, after kill() or stop(), start again: the log is appended to) and wait until it serves."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = len(self.log())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "NO_COLOR": "1"},
            )
        wait_until(
            self._started,
            timeout=20,
            what=f"stigmer server at {self.address} to start (log {self.log_path})",
        )
        return self

    def _started(self) -> bool:
        # Polled before the log is read: a process that had exited by then wrote all it ever will.
        code = self.proc.poll() if self.proc is not None else None
        if "Stigmer Server started successfully" in self.log()[self._log_offset :]:
            return True
        if code is not None:
            raise StigmerServerExitedError(
                f"stigmer server at {self.address} exited with code {code} before it started (log {self.log_path})"
            )
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args: str, timeout: float = 30.0) -> CliResult:
        """Run `stigmer ARGS --address <this server>` and capture everything."""
        done = subprocess.run(
            [stigmer_binary(), *args, "--address", self.address],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    def stop(self, *, timeout: float = 20.0) -> int | None:
        """SIGINT (graceful), then SIGKILL after ``timeout``; returns the exit code.

        Children the server started in sessions of their own (a managed Temporal) are killed
        too if the server did not stop them: nothing outlives the test.
        """
        proc = self.proc
        if proc is None:
            return None
        children = self.children()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.proc = None
        _kill_all(children)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and every child it started (by PID)."""
        proc = self.proc
        if proc is None:
            return
        children = self.children()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.proc = None
        _kill_all(children)

    def children(self) -> list[int]:
        """PIDs of the server's direct children (e.g. its managed Temporal)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True, timeout=10
        )
        return [int(p) for p in out.stdout.split()]


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for_log(server: StigmerServerProcess, text: str, *, timeout: float = 30.0, after: int = 0) -> int:
    """Wait until ``text`` appears in the server log past offset ``after``; return its offset."""
    found: list[int] = []

    def seen() -> bool:
        index = server.log().find(text, after)
        if index >= 0:
            found.append(index)
        return index >= 0

    wait_until(seen, timeout=timeout, what=f"log line {text!r}")
    return found[0]


def elapsed(since: float) -> float:
    return time.monotonic() - since
