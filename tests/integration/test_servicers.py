"""The gRPC API end to end: a real grpc.aio channel -> servicers -> real controllers -> real Store,
with a real TemporalConnection (wired as in production) to a real Temporal dev server, or to a
port nobody listens on when a test needs Temporal to be down.

Every channel call has a timeout. Each test builds its own server, store and task queues, so
tests share the session's dev server without seeing each other's work.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stigmer import __version__
from stigmer.api import (
    agent_execution_pb2,
    agent_execution_pb2_grpc,
    common_pb2,
    status_pb2,
    status_pb2_grpc,
    workflow_execution_pb2,
    workflow_execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from stigmer.controllers import AgentExecutionController, Reconciler, WorkflowController, WorkflowExecutionController
from stigmer.errors import UNAVAILABLE_MESSAGE
from stigmer.server import (
    MAX_RECEIVE_MESSAGE_BYTES,
    RETRY_AFTER_KEY,
    STATE_KEY,
    TEMPORAL_SERVICE,
    BoundServer,
    ListenError,
    ServerHealth,
    Services,
    build_server,
)
from stigmer.store import Store, new_id
from stigmer.temporal.agents import DELAY_ENV, EchoAgentRunner
from stigmer.temporal.connection import ConnectionSettings, CreatorTargets, TemporalConnection
from stigmer.testing.eventually import eventually
from stigmer.testing.factories import TemporalDevServerFactory
from stigmer.testing.ports import free_port
from stigmer.testing.temporal import TemporalDevServer
from tests.integration.connection_rig import fast_settings

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(60)]

CALL = 10.0  # unary calls; Creates wait for Temporal at most the controllers' start timeout
WATCH = 30.0  # a whole Watch stream, from the current state to a terminal phase
MIB = 1024 * 1024

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Text that breaks naive code: multi-byte UTF-8, astral emoji, quotes, backslashes, SQL, NUL, CR/LF.
TRICKY = (
    "héllo wörld 世界 🚀👍🏽 \"double\" 'single' `back` \\n\\\\ ; "
    "'); DROP TABLE agent_executions; -- \x00 after-nul \t\r\n OR 1=1 /* */ %s {} ${x}"
)


def document(name: str, **extra: Any) -> str:
    """A valid workflow document: a set task, then an agent task that uses the input and the value."""
    doc = {
        "name": name,
        "tasks": [
            {"name": "greet", "kind": "set", "values": {"greeting": "hi ${input.user}"}},
            {"name": "ask", "kind": "agent", "agent": "echo", "message": "${greeting}, how are you?"},
        ],
        **extra,
    }
    return json.dumps(doc, ensure_ascii=False, indent=1)


# ---------------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    store: Store
    connection: TemporalConnection
    health: ServerHealth
    bound: BoundServer
    channel: grpc.aio.Channel
    agent_executions: agent_execution_pb2_grpc.AgentExecutionServiceStub = field(init=False)
    workflows: workflow_pb2_grpc.WorkflowServiceStub = field(init=False)
    workflow_executions: workflow_execution_pb2_grpc.WorkflowExecutionServiceStub = field(init=False)
    status: status_pb2_grpc.StatusServiceStub = field(init=False)
    health_stub: health_pb2_grpc.HealthStub = field(init=False)

    def __post_init__(self) -> None:
        self.agent_executions = agent_execution_pb2_grpc.AgentExecutionServiceStub(self.channel)
        self.workflows = workflow_pb2_grpc.WorkflowServiceStub(self.channel)
        self.workflow_executions = workflow_execution_pb2_grpc.WorkflowExecutionServiceStub(self.channel)
        self.status = status_pb2_grpc.StatusServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    async def connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await eventually(self.connection.is_connected, timeout=timeout, what="connection CONNECTED")

    async def health_of(self, service: str) -> int:
        reply = await self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL)
        return reply.status


@asynccontextmanager
async def serving(
    settings: ConnectionSettings,
    data_dir: Path,
    *,
    start_timeout: float = 10.0,
    reconcile: bool = False,
    database_url: str | None = None,
) -> AsyncIterator[Stack]:
    """The production wiring in miniature: listener first, then Temporal in the background
    (and, with ``reconcile``, the reconciler on every CONNECTED). The store is SQLite in
    ``data_dir`` unless ``database_url`` names another."""
    store = Store.connect(database_url, data_dir=data_dir)
    # The connection is the controllers' Availability and the controllers are its creator
    # targets: the lambdas break the cycle (they read the controllers only once connected).
    connection = TemporalConnection(
        settings,
        store=store,
        runner=EchoAgentRunner(heartbeat_interval=0.1),
        targets=CreatorTargets(
            agent_execution=lambda creator: agent_executions.set_creator(creator),
            workflow_execution=lambda creator: workflow_executions.set_creator(creator),
            workflow_validation=lambda validator: workflows.set_validator(validator),
        ),
    )
    agent_executions = AgentExecutionController(
        store=store, availability=connection, start_timeout=start_timeout, watch_recheck_interval=1.0
    )
    workflows = WorkflowController(store=store, availability=connection, validate_timeout=start_timeout)
    workflow_executions = WorkflowExecutionController(
        store=store, availability=connection, start_timeout=start_timeout, watch_recheck_interval=1.0
    )
    if reconcile:
        connection.when_connected(Reconciler(store=store, availability=connection).reconcile)
    health = ServerHealth(connection.lifecycle, database=store)
    bound = build_server(
        Services(
            agent_executions=agent_executions,
            workflows=workflows,
            workflow_executions=workflow_executions,
            status=connection,
            health=health,
        ),
        address="127.0.0.1:0",
    )
    channel: grpc.aio.Channel | None = None
    try:
        await bound.server.start()
        await health.start()
        await connection.start()
        channel = grpc.aio.insecure_channel(bound.address)
        yield Stack(store, connection, health, bound, channel)
    finally:
        if channel is not None:
            await channel.close()
        await health.set_not_serving_all()
        await bound.server.stop(grace=1.0)
        await asyncio.wait_for(connection.close(), timeout=15)
        store.close()


def down_settings() -> ConnectionSettings:
    """Temporal "down": a free port nobody listens on (connection refused at once)."""
    return fast_settings(f"127.0.0.1:{free_port()}", fast_path_wait=2.0)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a unary call (an awaitable) or a stream call (async iterable) ends with."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    return info.value


async def watch_all(call: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in call]


def phases(items: Iterable[Any]) -> list[str]:
    return [common_pb2.ExecutionPhase.Name(item.phase) for item in items]


# ---------------------------------------------------------------------------------------- happy paths


async def test_agent_execution_runs_to_completed_visible_through_get_watch_and_list(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        created = await stack.agent_executions.Create(
            agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message="hello", runtime_env={"A": "1"}),
            timeout=CALL,
        )
        assert created.id.startswith("aex-") and len(created.id) == 30
        assert created.temporal_workflow_id == f"stigmer/agent-execution/invoke/{created.id}"
        assert created.HasField("created_at")
        assert [(m.role, m.text) for m in created.messages] == [("user", "hello")]

        stream = await watch_all(
            stack.agent_executions.Watch(agent_execution_pb2.WatchAgentExecutionRequest(id=created.id), timeout=WATCH)
        )
        seen = phases(stream)
        # Current state first, then changes in order, ending with (and after) the terminal phase.
        assert seen[-1] == "COMPLETED" and seen.count("COMPLETED") == 1
        assert seen == sorted(seen, key=["PENDING", "IN_PROGRESS", "COMPLETED"].index)

        got = await stack.agent_executions.Get(
            agent_execution_pb2.GetAgentExecutionRequest(id=created.id), timeout=CALL
        )
        assert got == stream[-1]
        assert got.phase == common_pb2.COMPLETED and got.error == ""
        assert [(m.role, m.text) for m in got.messages] == [("user", "hello"), ("agent", "[echo] hello")]
        assert got.HasField("started_at") and got.HasField("completed_at")
        assert got.started_at.ToNanoseconds() <= got.completed_at.ToNanoseconds()
        assert dict(got.runtime_env) == {"A": "1"}

        # A Watch on a finished execution sends its state once and ends.
        again = await watch_all(
            stack.agent_executions.Watch(agent_execution_pb2.WatchAgentExecutionRequest(id=created.id), timeout=CALL)
        )
        assert again == [got]

        listed = await stack.agent_executions.List(
            agent_execution_pb2.ListAgentExecutionsRequest(phase=common_pb2.COMPLETED), timeout=CALL
        )
        assert [e.id for e in listed.executions] == [created.id] and listed.next_page_token == ""
        pending = await stack.agent_executions.List(
            agent_execution_pb2.ListAgentExecutionsRequest(phase=common_pb2.PENDING), timeout=CALL
        )
        assert list(pending.executions) == []


async def test_workflow_create_validate_and_execute_to_completed(temporal, tmp_path) -> None:
    name = f"greet-{uuid.uuid4().hex[:8]}"
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        checked = await stack.workflows.Validate(
            workflow_pb2.ValidateWorkflowRequest(document=document(name)), timeout=CALL
        )
        assert checked.valid and list(checked.errors) == []
        broken = await stack.workflows.Validate(
            workflow_pb2.ValidateWorkflowRequest(document=json.dumps({"name": "x", "tasks": [{"kind": "nope"}]})),
            timeout=CALL,
        )
        assert not broken.valid and broken.errors  # an invalid document is an answer, not an error

        stored = await stack.workflows.Create(workflow_pb2.CreateWorkflowRequest(document=document(name)), timeout=CALL)
        assert stored.id.startswith("wf-") and stored.name == name and stored.validation.valid
        assert stored.document == document(name)
        by_name = await stack.workflows.Get(workflow_pb2.GetWorkflowRequest(id_or_name=name), timeout=CALL)
        by_id = await stack.workflows.Get(workflow_pb2.GetWorkflowRequest(id_or_name=stored.id), timeout=CALL)
        assert by_name == by_id == stored
        listed = await stack.workflows.List(workflow_pb2.ListWorkflowsRequest(), timeout=CALL)
        assert [w.id for w in listed.workflows] == [stored.id]

        duplicate = await rpc_error(
            stack.workflows.Create(workflow_pb2.CreateWorkflowRequest(document=document(name)), timeout=CALL)
        )
        assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS and name in duplicate.details()

        # An invalid document is stored with its errors, and cannot be executed.
        invalid = await stack.workflows.Create(
            workflow_pb2.CreateWorkflowRequest(document=json.dumps({"name": f"{name}-bad", "tasks": []})),
            timeout=CALL,
        )
        assert not invalid.validation.valid and invalid.validation.errors
        refused = await rpc_error(
            stack.workflow_executions.Create(
                workflow_execution_pb2.CreateWorkflowExecutionRequest(workflow=invalid.name), timeout=CALL
            )
        )
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION and invalid.name in refused.details()

        created = await stack.workflow_executions.Create(
            workflow_execution_pb2.CreateWorkflowExecutionRequest(workflow=name, input='{"user": "Zoë"}'),
            timeout=CALL,
        )
        assert created.id.startswith("wex-") and created.workflow_id == stored.id and created.workflow_name == name
        assert [(t.name, t.kind) for t in created.tasks] == [("greet", "set"), ("ask", "agent")]
        stream = await watch_all(
            stack.workflow_executions.Watch(
                workflow_execution_pb2.WatchWorkflowExecutionRequest(id=created.id), timeout=WATCH
            )
        )
        assert phases(stream)[-1] == "COMPLETED", stream[-1].error
        got = await stack.workflow_executions.Get(
            workflow_execution_pb2.GetWorkflowExecutionRequest(id=created.id), timeout=CALL
        )
        assert got == stream[-1]
        assert [t.status for t in got.tasks] == [workflow_execution_pb2.TaskState.COMPLETED] * 2
        assert "hi Zoë, how are you?" in got.tasks[1].output
        assert got.output and got.HasField("completed_at")
        listed_runs = await stack.workflow_executions.List(
            workflow_execution_pb2.ListWorkflowExecutionsRequest(), timeout=CALL
        )
        assert [e.id for e in listed_runs.executions] == [created.id]


async def test_text_round_trips_byte_for_byte(temporal, tmp_path) -> None:
    env_value = TRICKY.replace("\x00", "")  # an environment cannot hold NUL (the controller says so)
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        created = await stack.agent_executions.Create(
            agent_execution_pb2.CreateAgentExecutionRequest(
                agent="echo", message=TRICKY, runtime_env={"TRICKY": env_value}
            ),
            timeout=CALL,
        )
        assert created.message == TRICKY and created.messages[0].text == TRICKY
        stream = await watch_all(
            stack.agent_executions.Watch(agent_execution_pb2.WatchAgentExecutionRequest(id=created.id), timeout=WATCH)
        )
        got = await stack.agent_executions.Get(
            agent_execution_pb2.GetAgentExecutionRequest(id=created.id), timeout=CALL
        )
        assert got.phase == common_pb2.COMPLETED, got.error
        assert got.message.encode() == TRICKY.encode()
        assert got.runtime_env["TRICKY"].encode() == env_value.encode()
        assert [m.text.encode() for m in got.messages] == [TRICKY.encode(), f"[echo] {TRICKY}".encode()]
        assert stream[-1] == got

        # A document keeps its exact bytes (spacing, key order, escapes), under an unusual name.
        odd_name = f"Grüße 'q' \"dq\" ; DROP TABLE workflows; -- 🚀 {uuid.uuid4().hex[:6]}"
        quoted = json.dumps(odd_name, ensure_ascii=False)
        text = '{\n\t"tasks" : [ ],   "name":' + quoted + ', "description": "\\u00e9 é"}'
        stored = await stack.workflows.Create(workflow_pb2.CreateWorkflowRequest(document=text), timeout=CALL)
        assert stored.name == odd_name
        fetched = await stack.workflows.Get(workflow_pb2.GetWorkflowRequest(id_or_name=odd_name), timeout=CALL)
        assert fetched.document.encode() == text.encode()

        # Input JSON comes back as given, not re-serialized.
        name = f"in-{uuid.uuid4().hex[:8]}"
        await stack.workflows.Create(workflow_pb2.CreateWorkflowRequest(document=document(name)), timeout=CALL)
        raw_input = '{ "user" : "Zoë \\"x\\" \'; DROP TABLE x;--",  "n": 1.50, "e": "\\ud83d\\ude80" }'
        run = await stack.workflow_executions.Create(
            workflow_execution_pb2.CreateWorkflowExecutionRequest(workflow=name, input=raw_input), timeout=CALL
        )
        again = await stack.workflow_executions.Get(
            workflow_execution_pb2.GetWorkflowExecutionRequest(id=run.id), timeout=CALL
        )
        assert again.input.encode() == raw_input.encode()


async def test_status_while_connected(temporal, tmp_path) -> None:
    settings = fast_settings(temporal.address)
    async with serving(settings, tmp_path / "data") as stack:
        await stack.connected()
        status = await stack.status.GetStatus(status_pb2.GetStatusRequest(), timeout=CALL)
        assert status.state == "CONNECTED" and status.workers_running == 3 and status.attempt == 0
        assert status.temporal_address == temporal.address and status.namespace == "default"
        assert status.server_version == __version__ and status.last_error == ""
        assert not status.HasField("next_retry_at") and status.next_retry_in_seconds == 0
        assert abs(status.since.ToNanoseconds() / 1e9 - time.time()) < 60
        assert [(t.source, t.dest) for t in status.recent_transitions][-1] == ("CONNECTING", "CONNECTED")
        assert [t.seq for t in status.recent_transitions] == list(range(1, len(status.recent_transitions) + 1))
        assert await stack.health_of("") == SERVING
        assert await stack.health_of(TEMPORAL_SERVICE) == SERVING


# ---------------------------------------------------------------------------------------- bad input


async def test_bad_input_is_invalid_argument_naming_the_field(temporal, tmp_path) -> None:
    aex, wf, wex = agent_execution_pb2, workflow_pb2, workflow_execution_pb2
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        name = f"w-{uuid.uuid4().hex[:8]}"
        await stack.workflows.Create(wf.CreateWorkflowRequest(document=document(name)), timeout=CALL)
        a, w, x = stack.agent_executions, stack.workflows, stack.workflow_executions
        # "é" is two bytes in UTF-8: 1 MiB + 1 bytes, but only 524,289 characters.
        over_in_bytes = "é" * (MIB // 2) + "a"
        cases: list[tuple[str, Callable[[], Any], str]] = [
            (
                "empty agent",
                lambda: a.Create(aex.CreateAgentExecutionRequest(agent="", message="m"), timeout=CALL),
                "agent",
            ),
            ("empty message", lambda: a.Create(aex.CreateAgentExecutionRequest(agent="echo"), timeout=CALL), "message"),
            (
                "blank message",
                lambda: a.Create(aex.CreateAgentExecutionRequest(agent="echo", message=" \n\t"), timeout=CALL),
                "message",
            ),
            (
                "message 1 MiB + 1 byte",
                lambda: a.Create(aex.CreateAgentExecutionRequest(agent="echo", message="x" * (MIB + 1)), timeout=CALL),
                "message",
            ),
            (
                "message over 1 MiB in bytes, not in characters",
                lambda: a.Create(aex.CreateAgentExecutionRequest(agent="echo", message=over_in_bytes), timeout=CALL),
                "message",
            ),
            (
                "message of 3 MiB still reaches the controller",
                lambda: a.Create(aex.CreateAgentExecutionRequest(agent="echo", message="x" * (3 * MIB)), timeout=CALL),
                "message",
            ),
            (
                "bad runtime env name",
                lambda: a.Create(
                    aex.CreateAgentExecutionRequest(agent="echo", message="m", runtime_env={"1BAD": "v"}), timeout=CALL
                ),
                "runtime_env[1BAD]",
            ),
            ("unknown phase (aex)", lambda: a.List(aex.ListAgentExecutionsRequest(phase=42), timeout=CALL), "phase"),
            ("unknown phase (wex)", lambda: x.List(wex.ListWorkflowExecutionsRequest(phase=6), timeout=CALL), "phase"),
            (
                "bad page token",
                lambda: a.List(aex.ListAgentExecutionsRequest(page_token="garbage!"), timeout=CALL),
                "page_token",
            ),
            (
                "bad page token (wf)",
                lambda: w.List(wf.ListWorkflowsRequest(page_token="garbage!"), timeout=CALL),
                "page_token",
            ),
            ("empty id", lambda: a.Get(aex.GetAgentExecutionRequest(id=""), timeout=CALL), "id"),
            ("malformed id", lambda: a.Get(aex.GetAgentExecutionRequest(id="aex-123"), timeout=CALL), "id"),
            (
                "id with the wrong prefix",
                lambda: a.Get(aex.GetAgentExecutionRequest(id=new_id("wex")), timeout=CALL),
                "id",
            ),
            ("SQL as an id", lambda: a.Get(aex.GetAgentExecutionRequest(id="' OR 1=1 --"), timeout=CALL), "id"),
            ("malformed id (watch)", lambda: a.Watch(aex.WatchAgentExecutionRequest(id="nope"), timeout=CALL), "id"),
            ("malformed id (wex)", lambda: x.Get(wex.GetWorkflowExecutionRequest(id="wex-!"), timeout=CALL), "id"),
            (
                "malformed id (wex watch)",
                lambda: x.Watch(wex.WatchWorkflowExecutionRequest(id=new_id("aex")), timeout=CALL),
                "id",
            ),
            ("empty document", lambda: w.Create(wf.CreateWorkflowRequest(document=""), timeout=CALL), "document"),
            (
                "document not JSON",
                lambda: w.Create(wf.CreateWorkflowRequest(document="{not json"), timeout=CALL),
                "document",
            ),
            (
                "document not an object",
                lambda: w.Create(wf.CreateWorkflowRequest(document="[1]"), timeout=CALL),
                "document",
            ),
            (
                "document without a name",
                lambda: w.Create(wf.CreateWorkflowRequest(document='{"tasks": []}'), timeout=CALL),
                "document",
            ),
            (
                "document over 1 MiB",
                lambda: w.Create(
                    wf.CreateWorkflowRequest(document=document("big", description="x" * MIB)), timeout=CALL
                ),
                "document",
            ),
            ("empty workflow name", lambda: w.Get(wf.GetWorkflowRequest(id_or_name=""), timeout=CALL), "id_or_name"),
            (
                "empty workflow reference",
                lambda: x.Create(wex.CreateWorkflowExecutionRequest(workflow=""), timeout=CALL),
                "workflow",
            ),
            (
                "input not JSON",
                lambda: x.Create(wex.CreateWorkflowExecutionRequest(workflow=name, input="{nope"), timeout=CALL),
                "input",
            ),
        ]
        failures = []
        for label, call, field_name in cases:
            try:
                error = await rpc_error(call())
            except BaseException as exc:  # collect every case, then report them all
                failures.append(f"{label}: no error ({exc!r:.200})")
                continue
            code, details = error.code(), error.details() or ""
            if code != grpc.StatusCode.INVALID_ARGUMENT or not details.startswith(f"{field_name}: "):
                failures.append(f"{label}: {code} {details[:200]!r}")
            if "Traceback" in details or len(details) > 1000:
                failures.append(f"{label}: details leak internals or echo the input ({len(details)} chars)")
        assert not failures, "\n".join(failures)
        # Nothing was recorded by the refused Creates.
        listed = await a.List(aex.ListAgentExecutionsRequest(), timeout=CALL)
        assert list(listed.executions) == []


async def test_unknown_ids_are_not_found(temporal, tmp_path) -> None:
    aex, wf, wex = agent_execution_pb2, workflow_pb2, workflow_execution_pb2
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        a, w, x = stack.agent_executions, stack.workflows, stack.workflow_executions
        missing_aex, missing_wex, missing_wf = new_id("aex"), new_id("wex"), new_id("wf")
        cases: list[tuple[Any, str]] = [
            (a.Get(aex.GetAgentExecutionRequest(id=missing_aex), timeout=CALL), missing_aex),
            (a.Watch(aex.WatchAgentExecutionRequest(id=missing_aex), timeout=CALL), missing_aex),
            (x.Get(wex.GetWorkflowExecutionRequest(id=missing_wex), timeout=CALL), missing_wex),
            (x.Watch(wex.WatchWorkflowExecutionRequest(id=missing_wex), timeout=CALL), missing_wex),
            (w.Get(wf.GetWorkflowRequest(id_or_name=missing_wf), timeout=CALL), missing_wf),
            (w.Get(wf.GetWorkflowRequest(id_or_name="no-such-workflow"), timeout=CALL), "no-such-workflow"),
            (
                x.Create(wex.CreateWorkflowExecutionRequest(workflow="no-such-workflow"), timeout=CALL),
                "no-such-workflow",
            ),
        ]
        for call, needle in cases:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND, (needle, error.details())
            assert needle in error.details()


async def test_requests_over_the_receive_limit_are_refused_by_the_transport(tmp_path) -> None:
    async with serving(down_settings(), tmp_path / "data") as stack:
        error = await rpc_error(
            stack.agent_executions.Create(
                agent_execution_pb2.CreateAgentExecutionRequest(
                    agent="echo", message="x" * (MAX_RECEIVE_MESSAGE_BYTES + 1)
                ),
                timeout=CALL,
            )
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The server is unharmed.
        assert await stack.health_of("") == SERVING


# ---------------------------------------------------------------------------------------- Temporal down


async def test_creates_fail_fast_with_unavailable_and_leave_no_record(tmp_path) -> None:
    settings = down_settings()
    async with serving(settings, tmp_path / "data") as stack:
        await eventually(
            lambda: stack.connection.lifecycle.snapshot().attempt >= 1, timeout=10, what="a failed connection attempt"
        )
        # A stored, valid workflow, so that only Temporal stands between the request and a run.
        stack.store.create_workflow(name="stored", document=document("stored"), valid=True)
        creates = {
            "agent execution": stack.agent_executions.Create(
                agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message="hello"), timeout=CALL
            ),
            "workflow": stack.workflows.Create(
                workflow_pb2.CreateWorkflowRequest(document=document("new-one")), timeout=CALL
            ),
            "workflow execution": stack.workflow_executions.Create(
                workflow_execution_pb2.CreateWorkflowExecutionRequest(workflow="stored"), timeout=CALL
            ),
            "validate": stack.workflows.Validate(
                workflow_pb2.ValidateWorkflowRequest(document=document("new-one")), timeout=CALL
            ),
        }
        for what, call in creates.items():
            started = time.monotonic()
            error = await rpc_error(call)
            elapsed = time.monotonic() - started
            assert error.code() == grpc.StatusCode.UNAVAILABLE, (what, error.details())
            assert error.details() == UNAVAILABLE_MESSAGE
            trailers = dict(error.trailing_metadata() or ())
            assert trailers[STATE_KEY] in ("DISCONNECTED", "CONNECTING"), (what, trailers)
            assert int(trailers[RETRY_AFTER_KEY]) >= 1, (what, trailers)
            # One bounded fast-path attempt, not the controllers' 10 s start timeout.
            assert elapsed < settings.fast_path_wait + 1.5, (what, elapsed)
            print(f"{what}: UNAVAILABLE after {elapsed:.2f}s, trailers {trailers}")

        # Reads keep working from the store, and show that nothing was recorded.
        runs = await stack.agent_executions.List(agent_execution_pb2.ListAgentExecutionsRequest(), timeout=CALL)
        wf_runs = await stack.workflow_executions.List(
            workflow_execution_pb2.ListWorkflowExecutionsRequest(), timeout=CALL
        )
        stored = await stack.workflows.List(workflow_pb2.ListWorkflowsRequest(), timeout=CALL)
        assert list(runs.executions) == [] and list(wf_runs.executions) == []
        assert [w.name for w in stored.workflows] == ["stored"]

        status = await stack.status.GetStatus(status_pb2.GetStatusRequest(), timeout=CALL)
        assert status.state in ("DISCONNECTED", "CONNECTING") and status.workers_running == 0
        assert status.temporal_address == settings.host_port and status.last_error
        assert await stack.health_of("") == SERVING
        assert await stack.health_of(TEMPORAL_SERVICE) == NOT_SERVING


async def test_a_start_that_fails_midway_removes_the_record(
    temporal_dev_server_factory: TemporalDevServerFactory, tmp_path
) -> None:
    server: TemporalDevServer = temporal_dev_server_factory()
    # The ticker and the health probe would notice the kill; with them off the creator is still injected and the
    # start itself fails, which is the path that must delete the just-stored record.
    settings = replace(
        fast_settings(server.address), health_interval=600.0, probe=False, liveness=False, fast_path=False
    )
    async with serving(settings, tmp_path / "data", start_timeout=1.5) as stack:
        await stack.connected()
        written: list[str] = []
        stack.store.add_listener(lambda kind, id: written.append(id))
        await asyncio.to_thread(server.kill)
        error = await rpc_error(
            stack.agent_executions.Create(
                agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message="lost?"), timeout=CALL
            )
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE and error.details() == UNAVAILABLE_MESSAGE
        # The record was stored (the creator was still there), then removed when the start failed.
        assert written and written[0].startswith("aex-"), written
        gone = await rpc_error(
            stack.agent_executions.Get(agent_execution_pb2.GetAgentExecutionRequest(id=written[0]), timeout=CALL)
        )
        assert gone.code() == grpc.StatusCode.NOT_FOUND
        runs = await stack.agent_executions.List(agent_execution_pb2.ListAgentExecutionsRequest(), timeout=CALL)
        assert list(runs.executions) == []
        # The failed request told the connection at once (no health tick in 600 s).
        await eventually(lambda: not stack.connection.is_connected(), timeout=5, what="left CONNECTED")


async def test_creates_during_a_short_outage_fail_fast_and_succeed_right_after(
    temporal_dev_server_factory: TemporalDevServerFactory, tmp_path
) -> None:
    # What the recovery benchmark measures, with its production defaults except the health tick
    # (slowed down) and the health probe (off), so that only the creates themselves can tell the
    # connection. The SDK's default
    # retries would hold such a create for up to 10 s on the dead client while the state said
    # CONNECTED; the API's own client gives up after ~1 s and the outage becomes visible.
    server: TemporalDevServer = temporal_dev_server_factory()
    settings = replace(fast_settings(server.address), health_interval=600.0, liveness=False)
    async with serving(settings, tmp_path / "data") as stack:
        await stack.connected()

        async def create(message: str) -> agent_execution_pb2.AgentExecution:
            return await stack.agent_executions.Create(
                agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message=message), timeout=CALL
            )

        await create("warm-up")
        await asyncio.to_thread(server.kill)
        started = time.monotonic()
        error = await rpc_error(create("during the outage"))
        failed_after = time.monotonic() - started
        assert error.code() == grpc.StatusCode.UNAVAILABLE and error.details() == UNAVAILABLE_MESSAGE
        assert failed_after < 3.0, f"UNAVAILABLE took {failed_after:.2f}s"
        await eventually(lambda: not stack.connection.is_connected(), timeout=2, what="left CONNECTED")

        server.start()
        await server.wait_ready_async()
        answered = time.monotonic()
        created: list[agent_execution_pb2.AgentExecution] = []
        other_codes: list[grpc.StatusCode] = []

        async def one_gets_through() -> bool:  # a client retrying every 50 ms (the poll period)
            try:
                created.append(await create("after the outage"))
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    other_codes.append(err.code())
                return False
            return True

        await eventually(one_gets_through, timeout=5, interval=0.05, what="a create to succeed")
        recovered_after = time.monotonic() - answered
        assert other_codes == []

        async def completed() -> bool:
            got = await stack.agent_executions.Get(
                agent_execution_pb2.GetAgentExecutionRequest(id=created[0].id), timeout=CALL
            )
            return got.phase == common_pb2.COMPLETED

        await eventually(completed, timeout=15, what="the execution to complete")
    print(
        f"short outage: UNAVAILABLE after {failed_after:.2f}s; first create {recovered_after:.2f}s after "
        "Temporal answered"
    )


# ---------------------------------------------------------------------------------------- health


async def test_health_watch_follows_a_temporal_restart(
    temporal_dev_server_factory: TemporalDevServerFactory, tmp_path
) -> None:
    server: TemporalDevServer = temporal_dev_server_factory()
    async with serving(fast_settings(server.address), tmp_path / "data") as stack:
        seen: list[int] = []
        call = stack.health_stub.Watch(health_pb2.HealthCheckRequest(service=TEMPORAL_SERVICE), timeout=45)

        async def follow() -> None:
            async for reply in call:
                seen.append(reply.status)

        follower = asyncio.create_task(follow())
        try:
            await eventually(lambda: SERVING in seen, timeout=10, what="SERVING")
            await asyncio.to_thread(server.kill)
            await eventually(lambda: seen[-1] == NOT_SERVING, timeout=5, what="NOT_SERVING after the kill")
            assert await stack.health_of("") == SERVING  # the server itself still serves
            server.start()
            await server.wait_ready_async()
            await eventually(lambda: seen[-1] == SERVING, timeout=10, what="SERVING after the restart")
        finally:
            call.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        first = seen.index(SERVING)
        assert seen[first:] == [SERVING, NOT_SERVING, SERVING], seen
        status = await stack.status.GetStatus(status_pb2.GetStatusRequest(), timeout=CALL)
        assert status.state == "CONNECTED" and status.reconnect_count >= 1
        assert "health_failed" in [t.trigger for t in status.recent_transitions]


async def test_cancelled_watch_releases_its_store_subscription(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        active: set[object] = set()
        subscribe = stack.store.add_listener

        def counting(listener: Any) -> Callable[[], None]:
            token = object()
            unsubscribe = subscribe(listener)
            active.add(token)

            def done() -> None:
                active.discard(token)
                unsubscribe()

            return done

        stack.store.add_listener = counting  # type: ignore[method-assign]
        slow = await stack.agent_executions.Create(
            agent_execution_pb2.CreateAgentExecutionRequest(
                agent="echo", message="slow", runtime_env={DELAY_ENV: "30"}
            ),
            timeout=CALL,
        )
        call = stack.agent_executions.Watch(agent_execution_pb2.WatchAgentExecutionRequest(id=slow.id), timeout=WATCH)
        first = await asyncio.wait_for(call.read(), timeout=CALL)
        assert first.id == slow.id
        assert len(active) == 1
        call.cancel()
        await eventually(lambda: not active, timeout=5, what="the watch to unsubscribe")


# ---------------------------------------------------------------------------------------- listener


async def test_an_address_in_use_is_a_clear_error(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        async with serving(down_settings(), tmp_path / "data") as stack:
            services = Services(
                agent_executions=None,
                workflows=None,
                workflow_executions=None,  # type: ignore[arg-type]
                status=stack.connection,
                health=stack.health,
            )
            for busy in (address, stack.bound.address):  # a plain listener, and another gRPC server
                with pytest.raises(ListenError) as info:
                    build_server(services, address=busy)
                assert busy in str(info.value) and "in use" in str(info.value).lower()
            with pytest.raises(ListenError, match="not a valid host:port"):
                build_server(services, address="127.0.0.1:notaport")


async def test_status_reports_the_process_resources(tmp_path):
    """GetStatus carries the process' asyncio tasks, threads and fds (soak tests watch them)."""
    from stigmer.server.status import process_stats

    stats = process_stats()
    assert stats.asyncio_tasks >= 1  # this test's own task at least
    assert stats.threads >= 1 and stats.open_fds >= 3
