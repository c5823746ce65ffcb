"""TemporalConnection and StigmerServer are async context managers that run once (issue 18).

Against an address where nothing listens: the connection keeps retrying in the background, the
server serves its API regardless -- what matters here is start, close and refusal.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from stigmer.api import status_pb2, status_pb2_grpc
from stigmer.app import StigmerServer
from stigmer.config import Config
from stigmer.errors import ExitCode
from stigmer.store import Store
from stigmer.temporal.agents import EchoAgentRunner
from stigmer.temporal.connection import ConnectionSettings, TemporalConnection
from stigmer.temporal.names import TaskQueues
from stigmer.testing.ports import free_port

NOWHERE = "127.0.0.1:1"


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "data") as opened:
        yield opened


async def test_a_connection_runs_once_and_closes_twice(store: Store) -> None:
    connection = TemporalConnection(ConnectionSettings(host_port=NOWHERE), store=store, runner=EchoAgentRunner())
    async with connection as entered:
        assert entered is connection
        with pytest.raises(RuntimeError, match="already started"):
            await connection.start()
        with pytest.raises(RuntimeError, match="already started"):
            connection.when_connected(lambda session: None)  # type: ignore[arg-type,return-value]
    assert connection.lifecycle.state.name == "STOPPED"
    await connection.close()  # again: nothing to do
    with pytest.raises(RuntimeError, match="closed; make a new one"):
        await connection.start()


async def test_probes_are_observed_from_before_start_and_no_worker_runs_unconnected(store: Store) -> None:
    settings = ConnectionSettings(host_port=NOWHERE, queues=TaskQueues.with_suffix("obs"))
    connection = TemporalConnection(settings, store=store, runner=EchoAgentRunner())
    connection.observe_probes(lambda probe, answered: None)
    assert connection.workers_by_queue() == dict.fromkeys(
        (settings.queues.agent_execution, settings.queues.workflow_execution, settings.queues.workflow_validation),
        False,
    )
    async with connection:
        with pytest.raises(RuntimeError, match="already started"):
            connection.observe_probes(lambda probe, answered: None)


async def test_a_connection_closed_before_it_started_cannot_start(store: Store) -> None:
    connection = TemporalConnection(ConnectionSettings(host_port=NOWHERE), store=store, runner=EchoAgentRunner())
    await connection.close()
    with pytest.raises(RuntimeError, match="closed"):
        await connection.start()


def _config(tmp_path: Path) -> Config:
    return Config.from_env(
        {},
        address=f"127.0.0.1:{free_port()}",
        temporal_host_port=NOWHERE,
        data_dir=tmp_path / "server",
        grace=0.2,
        queues=TaskQueues.with_suffix(tmp_path.name),
    )


async def test_a_server_serves_inside_its_block_and_stops_after(tmp_path: Path) -> None:
    server = StigmerServer(_config(tmp_path))
    async with server:
        async with grpc.aio.insecure_channel(server.config.address) as channel:
            status = await status_pb2_grpc.StatusServiceStub(channel).GetStatus(
                status_pb2.GetStatusRequest(), timeout=5
            )
        assert status.state in ("DISCONNECTED", "CONNECTING")
        with pytest.raises(RuntimeError, match="already started"):
            await server.__aenter__()
    assert server.exit_code is ExitCode.OK
    assert server.running is not None and server.running.connection.lifecycle.state.name == "STOPPED"


async def test_a_server_that_cannot_start_says_so_with_its_exit_code(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "server").write_text("not a directory")  # the data dir cannot be used
    server = StigmerServer(config)
    with pytest.raises(RuntimeError, match="did not start \\(exit 78 CONFIG\\)"):
        async with server:
            pytest.fail("the block must not run")
    assert server.exit_code is ExitCode.CONFIG
