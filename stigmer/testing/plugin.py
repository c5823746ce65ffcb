"""The stigmer pytest plugin: real Temporal dev servers and real stigmer servers as fixtures.

Installed with stigmer-py and loaded by pytest through the ``pytest11`` entry point (``stigmer``):
there is nothing to add to a conftest.py (``-p no:stigmer`` turns it off). The guide's "For E2E
Tests" pattern, server first and Temporal after, reads::

    @pytest.mark.stigmer_temporal(start=False)
    def test_the_server_waits_for_temporal(temporal_dev_server, stigmer_server, stigmer_client):
        temporal_dev_server.start()                      # Temporal comes up after the server
        stigmer_client.wait_temporal_connected(timeout=30)
        execution = stigmer_client.create_agent_execution(agent="echo", message="hi")
        assert stigmer_client.wait_for_phase(execution.id, ["COMPLETED"], timeout=60).phase == "COMPLETED"

Public names (everything else here is private):

* fixtures ``temporal_dev_server``, ``stigmer_server``, ``stigmer_client``, ``async_stigmer_client``,
  ``temporal_dev_server_factory``, ``stigmer_server_factory``, ``stigmer_postgres``,
  ``postgres_database``, ``owned_postgres`` (each documented below);
* the marker ``stigmer_temporal(start=True)``;
* the command line option ``--stigmer-scope`` and the ini option ``stigmer_scope``.

**Scope.** ``temporal_dev_server``, ``stigmer_server`` and ``stigmer_client`` live for one test by
default. ``--stigmer-scope=module`` (or ``session``), or ``stigmer_scope = module`` in the ini
file, shares them across a module's (the session's) tests: much faster, but then a test that kills
Temporal does it for its neighbours too. The command line wins over the ini file. The factories
and ``async_stigmer_client`` are always per test (a client is cheap; an async one belongs to its
test's event loop).

**pytest-xdist.** Every worker starts its own processes: ports come from ``free_port()`` (each one
checked by binding, never handed out twice by one process), directories from ``tmp_path`` and
``tmp_path_factory`` (per worker under xdist), and nothing is shared between workers, so
``session`` scope means one server per worker.

**Failures.** When a test's setup, call or teardown fails, its report gets a section with the log
of every stigmer server the test used (``stigmer server log (ADDRESS)``, the last 200 lines) and
the tail of every dev server's log (``temporal dev server log (ADDRESS)``) and of every PostgreSQL
cluster's (``postgres log (127.0.0.1:PORT)``).

**PostgreSQL** (``stigmer.testing.postgres``, for the PostgreSQL store of issue 15). ``stigmer_postgres``
is one throw-away cluster per session (per xdist worker), started only when a test asks for it;
``postgres_database`` gives each test a fresh empty database on it (dropped at teardown), and
``owned_postgres`` a cluster of the test's own, to kill and restart. Without PostgreSQL's server
binaries these fixtures skip the test, except under ``CI`` where they fail.

**Cleanup.** Every process is killed by its PID (its process group) at teardown on every path;
dev servers that outlive their fixture anyway (a crashed run) are killed at interpreter exit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args

import pytest

from stigmer.testing.factories import StigmerServerFactory, TemporalDevServerFactory, log_tail
from stigmer.testing.server import StigmerServerProcess

if TYPE_CHECKING:
    from stigmer.client import AsyncClient, Client
    from stigmer.testing.postgres import PostgresDatabase, PostgresServer
    from stigmer.testing.temporal import TemporalDevServer

Scope = Literal["function", "module", "session"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
#: Per-call deadline of the client fixtures (seconds).
CLIENT_TIMEOUT = 10.0
TEMPORAL_LOG_LINES = 30
_MARKER = "stigmer_temporal"

F = TypeVar("F", bound=Callable[..., Any])


# -- options, marker, scope -------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = "scope of the temporal_dev_server, stigmer_server and stigmer_client fixtures (default: function)"
    parser.getgroup("stigmer").addoption(
        "--stigmer-scope", dest="stigmer_scope", choices=SCOPES, default=None, help=help_text
    )
    parser.addini("stigmer_scope", help=help_text, default="function")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(start=True): start=False gives the test an unstarted temporal_dev_server "
        "(stigmer_server still starts, pointed at it): the test starts Temporal itself",
    )
    stigmer_scope("temporal_dev_server", config)  # a wrong ini value is a usage error at once


def stigmer_scope(fixture_name: str, config: pytest.Config) -> Scope:
    """The scope of the shared fixtures: ``--stigmer-scope``, else the ``stigmer_scope`` ini value."""
    value = config.getoption("stigmer_scope", None) or str(config.getini("stigmer_scope") or "function")
    if value not in SCOPES:
        raise pytest.UsageError(f"stigmer_scope must be one of {', '.join(SCOPES)}, got {value!r}")
    return cast(Scope, value)


def _starts_temporal(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is None:
        return True
    if marker.args or set(marker.kwargs) - {"start"}:
        raise pytest.UsageError(f"@pytest.mark.{_MARKER} takes one keyword argument, start=True|False")
    return bool(marker.kwargs.get("start", True))


# -- logs in failure reports ------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    if report.failed:
        report.sections.extend(_log_sections(item))
    return report


def _log_sections(item: pytest.Item) -> list[tuple[str, str]]:
    """The logs of the processes this item's fixtures started (or point at), titled by address."""
    servers: list[StigmerServerProcess] = []
    temporals: list[TemporalDevServer] = []
    clusters: list[PostgresServer] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, StigmerServerFactory):
            servers += value.servers
            temporals += value.temporals
        elif isinstance(value, StigmerServerProcess):
            servers.append(value)
        elif isinstance(value, TemporalDevServerFactory):
            temporals += value.servers
        elif _is_dev_server(value):
            temporals.append(value)
        elif (postgres := _postgres_of(value)) is not None:
            clusters.append(postgres)
    sections = [
        (f"stigmer server log ({server.address})", log_tail(server.log()) or "(empty)") for server in _unique(servers)
    ]
    sections += [
        (f"temporal dev server log ({temporal.address})", temporal.log_tail(lines=TEMPORAL_LOG_LINES))
        for temporal in _unique(temporals)
    ]
    sections += [
        (f"postgres log (127.0.0.1:{cluster.port})", cluster.log_tail(lines=TEMPORAL_LOG_LINES))
        for cluster in _unique(clusters)
    ]
    return sections


def _is_dev_server(value: object) -> bool:
    module = sys.modules.get("stigmer.testing.temporal")  # not loaded: no dev server exists
    return module is not None and isinstance(value, module.TemporalDevServer)


def _postgres_of(value: object) -> PostgresServer | None:
    module = sys.modules.get("stigmer.testing.postgres")  # not loaded: no cluster exists
    if module is None:
        return None
    if isinstance(value, module.PostgresDatabase):
        return cast("PostgresServer", value.server)
    return cast("PostgresServer", value) if isinstance(value, module.PostgresServer) else None


def _unique(items: list[Any]) -> list[Any]:
    return list({id(item): item for item in items}.values())


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def temporal_dev_server_factory(tmp_path: Path) -> Iterator[TemporalDevServerFactory]:
    """Start dev servers on free ports, as many as the test wants; every one is killed at teardown.

    ``temporal_dev_server_factory(persistent=False, wait=True, port=None, transport_log=False,
    start=True)`` returns a ``stigmer.testing.temporal.TemporalDevServer``. A persistent server
    keeps its state in a db file under ``tmp_path``, so ``restart()`` brings it back. Async tests
    that must not block their loop pass ``wait=False`` and ``await server.wait_ready_async()``;
    ``start=False`` hands back an unstarted server (its address is fixed) for server-first tests.
    Always per test.
    """
    factory = TemporalDevServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def stigmer_server_factory(tmp_path: Path) -> Iterator[StigmerServerFactory]:
    """Start real ``stigmer server start`` processes; each is stopped (SIGINT, then SIGKILL) at teardown.

    ``stigmer_server_factory(temporal=..., extra=None, health_interval=1.0)`` returns a started
    ``stigmer.testing.server.StigmerServerProcess`` (``.address``, ``.log()``, ``.cli(...)``,
    ``.stop()``, ``.kill()``) with its own data dir under ``tmp_path``. ``temporal`` is a
    ``TemporalDevServer`` (started or not) or a "host:port"; ``extra`` are more ``server start``
    flags. Always per test.
    """
    factory = StigmerServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope=stigmer_scope)
def temporal_dev_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TemporalDevServer]:
    """A real ``temporal server start-dev`` on free loopback ports, started and ready, with its own db
    file in a tmp dir (so ``stop()`` then ``start()`` keeps workflows); killed at teardown.

    ``.stop()`` (graceful), ``.kill()`` (SIGKILL) and ``.start()`` + ``.wait_ready()`` simulate an
    outage; ``.address`` is "127.0.0.1:PORT". Under ``@pytest.mark.stigmer_temporal(start=False)``
    it is not started: the test calls ``.start()`` (the server-first order of the guide). Scope:
    ``--stigmer-scope`` (at module scope put the marker in the module's ``pytestmark``).
    """
    factory = TemporalDevServerFactory(tmp_path_factory.mktemp("temporal-dev-server"))
    try:
        yield factory(persistent=True, start=_starts_temporal(request))
    finally:
        factory.close()


@pytest.fixture(scope=stigmer_scope)
def stigmer_server(
    temporal_dev_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StigmerServerProcess]:
    """A real ``stigmer server start`` process on a free port with its own data dir, pointed at
    ``temporal_dev_server``, whether that is up yet or not (the server starts anyway and connects
    when Temporal comes). Wait for the connection with ``stigmer_client.wait_temporal_connected()``
    before creating executions. Stopped at teardown; its log goes into the report of a failed test.
    Scope: ``--stigmer-scope``.
    """
    factory = StigmerServerFactory(tmp_path_factory.mktemp("stigmer-server"))
    try:
        yield factory(temporal=temporal_dev_server)
    finally:
        factory.close()


@pytest.fixture(scope=stigmer_scope)
def stigmer_client(stigmer_server: StigmerServerProcess) -> Iterator[Client]:
    """A ``stigmer.client.Client`` for ``stigmer_server`` (each call's deadline: 10 s), closed at
    teardown. Scope: ``--stigmer-scope``."""
    from stigmer.client import Client

    with Client(address=stigmer_server.address, timeout=CLIENT_TIMEOUT) as client:
        yield client


def _async_fixture(func: F) -> F:
    """pytest-asyncio's fixture decorator when it is installed (so strict mode takes the fixture too)."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - the async fixture then needs another async plugin
        return cast(F, pytest.fixture(func))
    return cast(F, pytest_asyncio.fixture(func))


@_async_fixture
async def async_stigmer_client(stigmer_server: StigmerServerProcess) -> AsyncIterator[AsyncClient]:
    """A ``stigmer.client.AsyncClient`` for ``stigmer_server`` (each call's deadline: 10 s), closed at
    teardown; needs pytest-asyncio. Always per test, on the test's event loop."""
    from stigmer.client import AsyncClient

    async with AsyncClient(address=stigmer_server.address, timeout=CLIENT_TIMEOUT) as client:
        yield client


# -- PostgreSQL (stigmer.testing.postgres, imported only when a test asks for a cluster) --------


def _postgres_server() -> PostgresServer:
    """A started cluster; skips the test when PostgreSQL is not installed (fails under CI)."""
    from stigmer.testing.postgres import PostgresNotFoundError, PostgresServer

    try:
        server = PostgresServer()
    except PostgresNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        return server.start()
    except BaseException:
        server.close()
        raise


@pytest.fixture(scope="session")
def stigmer_postgres() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL cluster for the session (per xdist worker), started on first use:
    a ``stigmer.testing.postgres.PostgresServer`` on a free loopback port (``.url`` is
    ``postgresql://stigmer@127.0.0.1:PORT/stigmer``, the superuser; ``.create_database()``,
    ``.create_role(name, password=..., read_only=...)``, ``.connect()``, ``.execute(sql)``). Shared:
    never kill, restart or stop it (use ``owned_postgres``) and give roles unique names. Killed
    and its temp dir removed at the end of the session."""
    server = _postgres_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_database(stigmer_postgres: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh empty database ``test_<uuid>`` on ``stigmer_postgres``, dropped (``WITH (FORCE)``) at
    teardown: a ``PostgresDatabase`` with ``.name``, ``.url``, ``.url_for(user=, password=)`` and
    ``.connect()``."""
    database = stigmer_postgres.create_database()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
def owned_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own, started: ``.kill()`` (SIGKILL of the postmaster and
    every backend), ``.stop()`` and ``.restart()`` (same port and data dir, data kept). Killed and
    its temp dir removed at teardown."""
    server = _postgres_server()
    try:
        yield server
    finally:
        server.close()
