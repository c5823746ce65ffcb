"""Start-many, clean-up-all: the factories behind the plugin's fixtures (stigmer.testing.plugin).

Each factory starts processes in one directory of its own and remembers every one; ``close()``
kills them all by PID, whatever happened, and re-raises the first failure only after trying
every one. They work outside pytest too::

    temporal = TemporalDevServerFactory(tmp)
    servers = StigmerServerFactory(tmp)
    try:
        server = servers(temporal=temporal(persistent=True))
    finally:
        close_all([servers.close, temporal.close])

The dev server module (grpc, temporalio) is imported on the first call, not with this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from stigmer.testing.server import StigmerServerExitedError, StigmerServerProcess

if TYPE_CHECKING:
    from stigmer.testing.temporal import TemporalDevServer

__all__ = ["StigmerServerFactory", "TemporalDevServerFactory", "close_all", "log_tail"]

#: How much of a stigmer server's log a failure shows (the whole file stays at ``log_path``).
LOG_LINES = 200


def close_all(closers: Iterable[Callable[[], object]]) -> None:
    """Run every closer even if some fail, then re-raise the first failure."""
    errors: list[BaseException] = []
    for close in closers:
        try:
            close()
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def log_tail(text: str, *, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of ``text``, saying how many were left out."""
    kept = text.splitlines()
    if len(kept) <= lines:
        return text
    return f"(last {lines} of {len(kept)} lines)\n" + "\n".join(kept[-lines:])


class TemporalDevServerFactory:
    """``factory(persistent=False, wait=True, port=None, transport_log=False, start=True)`` starts a
    ``TemporalDevServer`` on free loopback ports and returns it.

    ``persistent=True`` keeps its state in a db file in the factory's directory, so ``restart()``
    (or ``stop()`` then ``start()``) brings workflows and namespaces back. ``wait=False`` only spawns
    (async tests then ``await server.wait_ready_async()``); ``start=False`` does not even spawn: the
    server has its address, and the test starts it when it wants Temporal up (``server.start();
    server.wait_ready()``). Each server logs to ``temporal-N.log`` in the directory.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: Every server made, in order, started or not.
        self.servers: list[TemporalDevServer] = []

    def __call__(
        self,
        *,
        persistent: bool = False,
        wait: bool = True,
        port: int | None = None,
        transport_log: bool = False,
        start: bool = True,
    ) -> TemporalDevServer:
        from stigmer.testing.temporal import TemporalDevServer

        n = len(self.servers)
        server = TemporalDevServer(
            port=port,
            db_filename=self.directory / f"temporal-{n}.db" if persistent else None,
            log_path=self.directory / f"temporal-{n}.log",
            transport_log=transport_log,
        )
        self.servers.append(server)
        if start:
            server.start()
            if wait:
                server.wait_ready()
        return server

    def close(self) -> None:
        """Kill every server (by its process group); safe twice."""
        close_all([server.kill for server in self.servers])


class StigmerServerFactory:
    """``factory(temporal=..., extra=None, health_interval=1.0)`` starts a real ``stigmer server start``
    process on a free port with its own data dir (``stigmer-N`` in the factory's directory) and
    returns the ``StigmerServerProcess`` once it says it started, which it does whether Temporal is
    up or not.

    ``temporal`` is a "host:port" or a ``TemporalDevServer`` (started or not); ``extra`` are more
    ``server start`` arguments. A server that does not start raises with its log's tail.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: Every server made, in order.
        self.servers: list[StigmerServerProcess] = []
        #: The dev servers they were pointed at, when given as objects (their logs go into reports).
        self.temporals: list[TemporalDevServer] = []

    def __call__(
        self,
        *,
        temporal: str | TemporalDevServer,
        extra: list[str] | None = None,
        health_interval: float = 1.0,
    ) -> StigmerServerProcess:
        if not isinstance(temporal, str):
            self.temporals.append(temporal)
            temporal = temporal.address
        server = StigmerServerProcess(
            data_dir=self.directory / f"stigmer-{len(self.servers)}",
            temporal=temporal,
            extra=extra,
            health_interval=health_interval,
        )
        self.servers.append(server)
        try:
            return server.start()
        except (AssertionError, StigmerServerExitedError) as exc:  # timed out, or exited
            raise type(exc)(f"{exc}\n--- {server.log_path} ---\n{log_tail(server.log())}") from None

    def close(self) -> None:
        """Stop every server (SIGINT, then SIGKILL) and what it started; safe twice."""
        close_all([server.stop for server in self.servers])
