"""TemporalDevServer against the real `temporal server start-dev`: the ground every integration
test stands on (start, ready, kill, restart with state, servers side by side, cleanup)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from stigmer.testing.eventually import eventually, wait_until
from stigmer.testing.factories import TemporalDevServerFactory
from stigmer.testing.ports import is_port_free
from stigmer.testing.temporal import TemporalDevServer, TemporalExitedError
from tests.conftest import TcpProxyFactory

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(60)]

RPC_TIMEOUT = timedelta(seconds=5)


async def connect(server: TemporalDevServer) -> Client:
    return await asyncio.wait_for(
        Client.connect(server.address, namespace=server.namespace), RPC_TIMEOUT.total_seconds()
    )


async def start_idle_workflow(client: Client) -> str:
    """A workflow no worker will ever pick up: it just sits there, RUNNING."""
    workflow_id = f"idle-{uuid.uuid4()}"
    await asyncio.wait_for(
        client.start_workflow("NoSuchWorkflow", id=workflow_id, task_queue=f"tq-{uuid.uuid4()}"),
        RPC_TIMEOUT.total_seconds(),
    )
    return workflow_id


async def status_of(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=RPC_TIMEOUT)
    return description.status


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def process_gone(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (PID 1 of a container may never reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def test_shared_server_is_ready_for_workflows(temporal: TemporalDevServer) -> None:
    client = await connect(temporal)
    response = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default"), timeout=RPC_TIMEOUT
    )
    assert response.namespace_info.name == "default"
    # Ready means ready: a workflow can be started at once, no grace period.
    workflow_id = await start_idle_workflow(client)
    assert await status_of(client, workflow_id) == WorkflowExecutionStatus.RUNNING


async def test_sigkill_closes_the_port_and_restart_keeps_workflows(
    temporal_dev_server_factory: TemporalDevServerFactory,
) -> None:
    server = temporal_dev_server_factory(persistent=True)
    client = await connect(server)
    workflow_id = await start_idle_workflow(client)
    old_pid = server.pid
    assert old_pid is not None

    server.kill()
    assert not server.is_running
    assert process_gone(old_pid)
    assert refuses_connections(server.port)
    assert is_port_free(server.port) and is_port_free(server.http_port)

    server.restart()
    await server.wait_ready_async(timeout=30)
    assert server.pid != old_pid
    assert server.address == f"127.0.0.1:{server.port}"
    client = await connect(server)
    assert await status_of(client, workflow_id) == WorkflowExecutionStatus.RUNNING


async def test_in_memory_restart_forgets_everything(temporal_dev_server_factory: TemporalDevServerFactory) -> None:
    server = temporal_dev_server_factory()
    workflow_id = await start_idle_workflow(await connect(server))
    server.restart()  # graceful: SIGINT, then a new process on the same port
    await server.wait_ready_async()
    client = await connect(server)
    with pytest.raises(RPCError) as info:
        await status_of(client, workflow_id)
    assert info.value.status == RPCStatusCode.NOT_FOUND


async def test_two_servers_side_by_side(temporal_dev_server_factory: TemporalDevServerFactory) -> None:
    first = temporal_dev_server_factory(wait=False)
    second = temporal_dev_server_factory(wait=False)
    await asyncio.gather(first.wait_ready_async(), second.wait_ready_async())
    ports_first = {first.port, first.http_port, first.metrics_port}
    ports_second = {second.port, second.http_port, second.metrics_port}
    assert not ports_first & ports_second
    workflow_id = await start_idle_workflow(await connect(first))
    assert await status_of(await connect(first), workflow_id) == WorkflowExecutionStatus.RUNNING
    with pytest.raises(RPCError) as info:
        await status_of(await connect(second), workflow_id)
    assert info.value.status == RPCStatusCode.NOT_FOUND


def test_context_manager_from_sync_code(tmp_path: Path) -> None:
    with TemporalDevServer(log_path=tmp_path / "t.log") as server:
        assert server.is_running
        pid = server.pid
        assert pid is not None
    assert not server.is_running
    assert process_gone(pid)
    assert refuses_connections(server.port)


def test_early_exit_fails_fast_with_the_log(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        server = TemporalDevServer(port=squatter.getsockname()[1], log_path=tmp_path / "t.log")
        server.start()
        try:
            with pytest.raises(TemporalExitedError, match="exited with code"):
                server.wait_ready(timeout=20)
        finally:
            server.kill()


def test_leftover_servers_are_killed_at_interpreter_exit(tmp_path: Path) -> None:
    """The atexit registry: a process that forgets its server does not leak it."""
    script = textwrap.dedent(
        f"""
        from stigmer.testing.temporal import TemporalDevServer
        server = TemporalDevServer(log_path={str(tmp_path / "t.log")!r}).start()
        server.wait_ready()
        print(server.pid, server.port, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=45,
        check=True,
    )
    pid, port = map(int, done.stdout.split())
    wait_until(lambda: process_gone(pid), timeout=5, what=f"leftover dev server {pid} to die")
    assert refuses_connections(port)


async def test_proxy_cuts_and_heals_the_path_to_temporal(
    temporal: TemporalDevServer, tcp_proxy_factory: TcpProxyFactory
) -> None:
    """The fault tests' building block, checked with real gRPC traffic (HTTP/2 over the proxy)."""
    proxy = tcp_proxy_factory(temporal.address)
    client = await asyncio.wait_for(Client.connect(proxy.address), RPC_TIMEOUT.total_seconds())
    short = timedelta(seconds=0.5)

    async def describe() -> None:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"), timeout=short)

    async def healthy() -> None:
        try:
            await describe()
        except RPCError as exc:
            raise AssertionError(f"{exc.status.name}: {exc.message}") from exc

    await describe()

    async def refused() -> None:
        with pytest.raises(RPCError) as info:
            await describe()
        assert info.value.status == RPCStatusCode.UNAVAILABLE, info.value

    proxy.refuse()
    # A call racing the reset fails as UNKNOWN "transport error" or CANCELLED (both seen);
    # once the client has noticed, every new dial is refused: UNAVAILABLE.
    await eventually(refused, timeout=10, what="calls to fail with UNAVAILABLE while refused")
    proxy.forward()
    await eventually(healthy, timeout=10, what="client to reconnect after refuse")

    proxy.blackhole()
    started = asyncio.get_running_loop().time()
    with pytest.raises(RPCError):
        await describe()  # no answer: only the call's own timeout ends it
    assert asyncio.get_running_loop().time() - started >= short.total_seconds() * 0.9
    proxy.forward()
    await eventually(healthy, timeout=10, what="client to reconnect after blackhole")
    assert proxy.connections_accepted >= 3  # each heal needed a new connection
