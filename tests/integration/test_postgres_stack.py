"""The whole server on PostgreSQL: the API, the connection, real workers and a real Temporal dev
server, with the store in a real cluster that the tests kill and restart.

The stack is test_servicers' (``serving(..., database_url=...)``); the store contract itself runs
in tests/unit on both backends, and what only a shared database has in test_postgres_store.py.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from grpc_health.v1 import health_pb2

from stigmer.api import agent_execution_pb2, common_pb2, workflow_execution_pb2, workflow_pb2
from stigmer.server import DATABASE_SERVICE
from stigmer.store import Phase
from stigmer.temporal.agents import DELAY_ENV
from stigmer.testing.eventually import eventually
from stigmer.testing.postgres import PostgresDatabase, PostgresServer
from tests.integration.connection_rig import fast_settings
from tests.integration.test_servicers import CALL, WATCH, document, rpc_error, serving, watch_all

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.timeout(180)]

AEX = agent_execution_pb2
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_executions_run_to_the_end_on_postgresql(temporal, postgres_database: PostgresDatabase, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data", database_url=postgres_database.url) as stack:
        await stack.connected()
        assert await stack.health_of(DATABASE_SERVICE) == SERVING
        created = await stack.agent_executions.Create(
            AEX.CreateAgentExecutionRequest(agent="echo", message="hello \x00 world"), timeout=CALL
        )
        stream = await watch_all(
            stack.agent_executions.Watch(AEX.WatchAgentExecutionRequest(id=created.id), timeout=WATCH)
        )
        assert stream[-1].phase == common_pb2.COMPLETED
        assert [m.text for m in stream[-1].messages] == ["hello \x00 world", "[echo] hello \x00 world"]

        flow = await stack.workflows.Create(
            workflow_pb2.CreateWorkflowRequest(document=document("greet-pg")), timeout=CALL
        )
        wex = await stack.workflow_executions.Create(
            workflow_execution_pb2.CreateWorkflowExecutionRequest(workflow=flow.name, input='{"user": "ann"}'),
            timeout=CALL,
        )
        done = await watch_all(
            stack.workflow_executions.Watch(
                workflow_execution_pb2.WatchWorkflowExecutionRequest(id=wex.id), timeout=WATCH
            )
        )
        assert done[-1].phase == common_pb2.COMPLETED, done[-1]

        slow = await stack.agent_executions.Create(
            AEX.CreateAgentExecutionRequest(agent="echo", message="slow", runtime_env={DELAY_ENV: "60"}), timeout=CALL
        )

        async def running() -> bool:
            got = await stack.agent_executions.Get(AEX.GetAgentExecutionRequest(id=slow.id), timeout=CALL)
            return got.phase == common_pb2.IN_PROGRESS

        await eventually(running, timeout=20, what="the slow agent running")
        await stack.agent_executions.Cancel(AEX.CancelAgentExecutionRequest(id=slow.id), timeout=CALL)
        cancelled = await watch_all(
            stack.agent_executions.Watch(AEX.WatchAgentExecutionRequest(id=slow.id), timeout=WATCH)
        )
        assert cancelled[-1].phase == common_pb2.CANCELLED


async def test_a_postgresql_restart_mid_load_loses_nothing(temporal, owned_postgres: PostgresServer, tmp_path) -> None:
    url = owned_postgres.url
    async with serving(fast_settings(temporal.address), tmp_path / "data", database_url=url) as stack:
        await stack.connected()
        acknowledged: list[str] = []
        refused: list[grpc.StatusCode] = []
        stop = asyncio.Event()

        async def load() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    made = await stack.agent_executions.Create(
                        AEX.CreateAgentExecutionRequest(agent="echo", message=f"m{n}"), timeout=CALL
                    )
                    acknowledged.append(made.id)
                except grpc.aio.AioRpcError as err:
                    refused.append(err.code())
                    await asyncio.sleep(0.05)  # a client's pause before its next try

        clients = [asyncio.create_task(load()) for _ in range(4)]
        try:
            await eventually(lambda: len(acknowledged) >= 10, timeout=20, what="load running")
            await asyncio.to_thread(owned_postgres.kill)
            await eventually(lambda: stack.health_of(DATABASE_SERVICE), timeout=10, what="health answers")

            async def database_down() -> bool:
                return await stack.health_of(DATABASE_SERVICE) == NOT_SERVING

            await eventually(database_down, timeout=10, what="stigmer.database NOT_SERVING")
            error = await rpc_error(stack.agent_executions.List(AEX.ListAgentExecutionsRequest(), timeout=CALL))
            assert error.code() == grpc.StatusCode.UNAVAILABLE and "database unavailable" in (error.details() or "")
            before_restart = len(acknowledged)
            await asyncio.to_thread(owned_postgres.restart)

            async def database_up() -> bool:
                return await stack.health_of(DATABASE_SERVICE) == SERVING

            await eventually(database_up, timeout=20, what="stigmer.database SERVING again")
            await eventually(lambda: len(acknowledged) >= before_restart + 10, timeout=30, what="load resumed")
        finally:
            stop.set()
            for client in clients:
                client.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await client

        assert set(refused) <= {grpc.StatusCode.UNAVAILABLE}, refused  # never INTERNAL

        async def all_completed() -> bool:
            for id in acknowledged:
                got = await stack.agent_executions.Get(AEX.GetAgentExecutionRequest(id=id), timeout=CALL)
                if got.phase != common_pb2.COMPLETED:
                    return False
            return True

        await eventually(all_completed, timeout=90, interval=0.5, what="every acknowledged create COMPLETED")
        listed = {r.id for r in stack.store.list_agent_executions(page_size=1000)[0]}
        assert set(acknowledged) <= listed
        # An unacknowledged create is absent or completed, never half-written.
        stray = [r for r in stack.store.list_agent_executions(page_size=1000)[0] if r.phase is not Phase.COMPLETED]
        assert stray == []
