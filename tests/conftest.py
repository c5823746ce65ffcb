"""Fixtures shared by every test package; the logic behind them lives in tests/support."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from stigmer.testing.server import StigmerServerProcess
from stigmer.testing.temporal import TemporalDevServer
from tests.support.tcp_proxy import TcpProxy

TemporalFactory = Callable[..., TemporalDevServer]
TcpProxyFactory = Callable[..., TcpProxy]


@pytest.fixture
def temporal_factory(tmp_path: Path) -> Iterator[TemporalFactory]:
    """Start dev servers on free ports; every one is killed at teardown, whatever happened.

    Call it as `temporal_factory(persistent=True, wait=True, port=None, transport_log=False)`. A persistent server
    keeps its state in a db file under tmp_path, so restart() brings it back. Async tests that
    must not block their loop pass wait=False and `await server.wait_ready_async()`.
    """
    servers: list[TemporalDevServer] = []

    def make(
        *, persistent: bool = False, wait: bool = True, port: int | None = None, transport_log: bool = False
    ) -> TemporalDevServer:
        n = len(servers)
        server = TemporalDevServer(
            port=port,
            db_filename=tmp_path / f"temporal-{n}.db" if persistent else None,
            log_path=tmp_path / f"temporal-{n}.log",
            transport_log=transport_log,
        )
        servers.append(server)
        server.start()
        if wait:
            server.wait_ready()
        return server

    yield make
    _close_all([server.kill for server in servers])


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """One in-memory dev server shared by the session. Never kill or restart it: use
    temporal_factory for that. Give each test its own task queue and workflow ids."""
    log_path = tmp_path_factory.mktemp("temporal-session") / "temporal.log"
    with TemporalDevServer(log_path=log_path) as server:
        yield server


@pytest.fixture
def tcp_proxy_factory() -> Iterator[TcpProxyFactory]:
    """Start TcpProxy instances in forward mode towards a "host:port"; closed at teardown.
    ``upstream_down="hold"`` makes one that keeps connections open and silent while its upstream is down."""
    proxies: list[TcpProxy] = []

    def make(target: str, *, upstream_down: Literal["close", "hold"] = "close") -> TcpProxy:
        proxy = TcpProxy(target=target, upstream_down=upstream_down)
        proxies.append(proxy)
        return proxy.start()

    yield make
    _close_all([proxy.close for proxy in proxies])


def _close_all(closers: list[Callable[[], object]]) -> None:
    """Run every closer even if some fail, then re-raise the first failure."""
    errors: list[BaseException] = []
    for close in closers:
        try:
            close()
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def stigmer_server_factory(tmp_path: Path) -> Iterator[Callable[..., StigmerServerProcess]]:
    """Start real `stigmer server start` processes; each is stopped (then killed) at teardown."""
    servers: list[StigmerServerProcess] = []

    def make(*, temporal: str, extra: list[str] | None = None, health_interval: float = 1.0) -> StigmerServerProcess:
        server = StigmerServerProcess(
            data_dir=tmp_path / f"stigmer-{len(servers)}",
            temporal=temporal,
            extra=extra,
            health_interval=health_interval,
        )
        servers.append(server)
        return server.start()

    yield make
    _close_all([server.stop for server in servers])
