"""Fixtures shared by every test package. The processes come from the stigmer pytest plugin
(stigmer/testing/plugin.py, loaded through its entry point: temporal_dev_server_factory,
stigmer_server_factory, ...); what is only this project's lives here, its logic in tests/support."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from stigmer.store import Store
from stigmer.testing.factories import close_all
from stigmer.testing.temporal import TemporalDevServer
from tests.support.tcp_proxy import TcpProxy

TcpProxyFactory = Callable[..., TcpProxy]


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """One in-memory dev server shared by the session. Never kill or restart it: use
    temporal_dev_server_factory for that. Give each test its own task queue and workflow ids."""
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
    close_all([proxy.close for proxy in proxies])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The store contract's fixture: every test that takes ``store`` runs on both backends,
    SQLite in tmp_path and PostgreSQL in a fresh database of the session's cluster."""
    if request.param == "sqlite":
        with Store.open(tmp_path / "data") as opened:
            yield opened
        return
    database = request.getfixturevalue("postgres_database")
    with Store.connect(database.url, data_dir=tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store, for what only SQLite has (its file, its pragmas)."""
    with Store.open(tmp_path / "data") as opened:
        yield opened
