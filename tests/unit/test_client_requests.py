"""What stigmer.client puts on the wire for creates, cancels, deletes and filtered lists, seen by a
fake server on a real grpc.aio channel (no Temporal, no store).

The point of request ids: one logical create sends one UUID, the same on each of the client's own
UNAVAILABLE retries (they resend the same request), a fresh one on the next create.
"""

from __future__ import annotations

import getpass
import inspect
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import grpc
import pytest

from stigmer.api import agent_execution_pb2 as aex
from stigmer.api import agent_execution_pb2_grpc as aex_grpc
from stigmer.api import common_pb2
from stigmer.api import workflow_execution_pb2 as wex
from stigmer.api import workflow_execution_pb2_grpc as wex_grpc
from stigmer.api import workflow_pb2 as wf
from stigmer.api import workflow_pb2_grpc as wf_grpc
from stigmer.client import AsyncClient, Client, Phase, TemporalUnavailableError, _transport
from stigmer.client._aio import FORCE_DELETE_DEADLINE
from stigmer.client.models import timestamp
from stigmer.contract import RETRY_AFTER_KEY, STATE_KEY, UNAVAILABLE_MESSAGE

pytestmark = pytest.mark.timeout(30)
ID = "aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"
WEX_ID = "wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"


class Recorder:
    """Every request each method saw; the first ``refuse`` creates are refused as Temporal-down."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Any]] = {}
        self.refuse = 0

    async def record(self, method: str, request: Any, context: Any) -> None:
        self.seen.setdefault(method, []).append(request)
        if method.endswith("Create") and self.refuse > 0:
            self.refuse -= 1
            context.set_trailing_metadata(((STATE_KEY, "RECONNECTING"), (RETRY_AFTER_KEY, "0")))
            await context.abort(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE)


class Agents(aex_grpc.AgentExecutionServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Create(self, request: aex.CreateAgentExecutionRequest, context: Any) -> aex.AgentExecution:
        await self.rec.record("aex.Create", request, context)
        return aex.AgentExecution(id=ID, agent=request.agent, request_id=request.request_id, phase=common_pb2.PENDING)

    async def List(self, request: aex.ListAgentExecutionsRequest, context: Any) -> aex.ListAgentExecutionsResponse:
        await self.rec.record("aex.List", request, context)
        page = int(request.page_token or "0")
        return aex.ListAgentExecutionsResponse(
            executions=[aex.AgentExecution(id=f"aex-{page}", phase=common_pb2.COMPLETED)],
            next_page_token=str(page + 1) if page < 2 else "",
        )

    async def Cancel(self, request: aex.CancelAgentExecutionRequest, context: Any) -> aex.AgentExecution:
        await self.rec.record("aex.Cancel", request, context)
        record = aex.AgentExecution(
            id=request.id, phase=common_pb2.CANCELLED, cancelled_by=request.requested_by, cancel_reason=request.reason
        )
        record.cancel_requested_at.FromSeconds(1_800_000_000)
        return record

    async def Delete(self, request: aex.DeleteAgentExecutionRequest, context: Any) -> aex.AgentExecution:
        await self.rec.record("aex.Delete", request, context)
        return aex.AgentExecution(id=request.id, phase=common_pb2.COMPLETED)


class Workflows(wf_grpc.WorkflowServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Create(self, request: wf.CreateWorkflowRequest, context: Any) -> wf.Workflow:
        await self.rec.record("wf.Create", request, context)
        return wf.Workflow(id="wf-1", name="w", request_id=request.request_id)

    async def Delete(self, request: wf.DeleteWorkflowRequest, context: Any) -> wf.Workflow:
        await self.rec.record("wf.Delete", request, context)
        return wf.Workflow(id="wf-1", name=request.id_or_name)


class Runs(wex_grpc.WorkflowExecutionServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Create(self, request: wex.CreateWorkflowExecutionRequest, context: Any) -> wex.WorkflowExecution:
        await self.rec.record("wex.Create", request, context)
        return wex.WorkflowExecution(id=WEX_ID, request_id=request.request_id, phase=common_pb2.PENDING)

    async def List(
        self, request: wex.ListWorkflowExecutionsRequest, context: Any
    ) -> wex.ListWorkflowExecutionsResponse:
        await self.rec.record("wex.List", request, context)
        page = int(request.page_token or "0")
        return wex.ListWorkflowExecutionsResponse(
            executions=[wex.WorkflowExecution(id=f"wex-{page}", phase=common_pb2.COMPLETED)],
            next_page_token="1" if page == 0 else "",
        )

    async def Cancel(self, request: wex.CancelWorkflowExecutionRequest, context: Any) -> wex.WorkflowExecution:
        await self.rec.record("wex.Cancel", request, context)
        return wex.WorkflowExecution(id=request.id, phase=common_pb2.CANCELLED, cancelled_by=request.requested_by)

    async def Delete(self, request: wex.DeleteWorkflowExecutionRequest, context: Any) -> wex.WorkflowExecution:
        await self.rec.record("wex.Delete", request, context)
        return wex.WorkflowExecution(id=request.id, phase=common_pb2.FAILED)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, Recorder]]:
    rec = Recorder()
    server = grpc.aio.server()
    aex_grpc.add_AgentExecutionServiceServicer_to_server(Agents(rec), server)
    wf_grpc.add_WorkflowServiceServicer_to_server(Workflows(rec), server)
    wex_grpc.add_WorkflowExecutionServiceServicer_to_server(Runs(rec), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", rec
    finally:
        await server.stop(grace=None)


def client_for(address: str, **kwargs: Any) -> AsyncClient:
    return AsyncClient(address=address, token="", timeout=5, **kwargs)


async def test_retries_of_one_create_resend_its_request_id_and_the_next_create_gets_another(fake) -> None:
    address, rec = fake
    async with client_for(address, retry_unavailable=10) as client:
        rec.refuse = 2
        first = await client.create_agent_execution(agent="a", message="m")
        sent = [r.request_id for r in rec.seen["aex.Create"]]
        assert len(sent) == 3 and len(set(sent)) == 1 and uuid.UUID(sent[0]).version == 4
        assert first.request_id == sent[0]
        second = await client.create_agent_execution(agent="a", message="m")
        assert second.request_id not in sent and uuid.UUID(second.request_id)

        rec.refuse = 1
        flow = await client.create_workflow("{}")
        runs = await client.create_workflow_execution(workflow="w")
        wf_sent = [r.request_id for r in rec.seen["wf.Create"]]
        assert len(wf_sent) == 2 and wf_sent[0] == wf_sent[1] == flow.request_id
        assert uuid.UUID(runs.request_id) and runs.request_id != flow.request_id


async def test_a_given_request_id_is_sent_as_it_is_and_empty_sends_none(fake) -> None:
    address, _ = fake
    mine = str(uuid.uuid4())
    async with client_for(address) as client:
        assert (await client.create_agent_execution(agent="a", message="m", request_id=mine)).request_id == mine
        assert (await client.create_agent_execution(agent="a", message="m", request_id="")).request_id == ""
        assert (await client.create_workflow("{}", request_id=mine)).request_id == mine
        assert (await client.create_workflow_execution(workflow="w", request_id=mine)).request_id == mine


async def test_without_the_opt_in_retry_grpc_tries_a_refused_create_three_times_with_one_request_id(fake) -> None:
    # gRPC's retry policy (stigmer.client.target): it cannot tell a refusal from a lost server.
    address, rec = fake
    rec.refuse = 3
    async with client_for(address) as client:
        with pytest.raises(TemporalUnavailableError):
            await client.create_agent_execution(agent="a", message="m")
        sent = [r.request_id for r in rec.seen["aex.Create"]]
        assert len(sent) == 3 and len(set(sent)) == 1 and sent[0]

        rec.refuse = 1  # the next attempt (another server, behind a list) answers
        assert (await client.create_workflow("{}")).request_id == rec.seen["wf.Create"][-1].request_id
        assert len(rec.seen["wf.Create"]) == 2


async def test_a_create_without_a_request_id_is_never_sent_twice(fake) -> None:
    address, rec = fake
    rec.refuse = 1
    async with client_for(address) as client:
        with pytest.raises(TemporalUnavailableError):
            await client.create_agent_execution(agent="a", message="m", request_id="")
    assert [r.request_id for r in rec.seen["aex.Create"]] == [""]


async def test_list_filters_go_with_every_page(fake) -> None:
    address, rec = fake
    after = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    async with client_for(address) as client:
        ids = [
            e.id
            async for e in client.list_agent_executions(
                phase="COMPLETED", agent="echo", parent_id=WEX_ID, created_after=after, page_size=1
            )
        ]
        assert ids == ["aex-0", "aex-1", "aex-2"]
        runs = [e.id async for e in client.list_workflow_executions(workflow="hello", created_after=after)]
        assert runs == ["wex-0", "wex-1"]
    pages = rec.seen["aex.List"]
    assert [p.page_token for p in pages] == ["", "1", "2"]
    for page in pages:
        assert (page.agent, page.parent_id, page.phase, page.page_size) == ("echo", WEX_ID, common_pb2.COMPLETED, 1)
        assert page.created_after.ToDatetime(tzinfo=UTC) == after  # to the microsecond (plus 999 ns)
        assert page.created_after.nanos == 999
    assert [(p.workflow, p.created_after.seconds) for p in rec.seen["wex.List"]] == [
        ("hello", int(after.timestamp()))
    ] * 2


async def test_no_filter_sends_no_created_after(fake) -> None:
    address, rec = fake
    async with client_for(address) as client:
        await client.list_agent_executions_page()
        await client.list_workflow_executions_page()
    assert not rec.seen["aex.List"][0].HasField("created_after")
    assert not rec.seen["wex.List"][0].HasField("created_after")
    assert rec.seen["aex.List"][0].agent == "" and rec.seen["wex.List"][0].workflow == ""


def test_created_after_naive_is_utc_and_aware_is_its_instant() -> None:
    aware = datetime(2026, 12, 4, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 12, 4, 10, 0)
    assert (
        timestamp(aware).seconds == timestamp(naive).seconds == int(datetime(2026, 12, 4, 10, tzinfo=UTC).timestamp())
    )
    assert timestamp(naive).nanos == 0 and timestamp(naive, whole_microsecond=True).nanos == 999
    with pytest.raises(TypeError, match="datetime"):
        timestamp("2026-12-04")  # type: ignore[arg-type]


async def test_cancel_and_delete_send_what_they_are_given(fake) -> None:
    address, rec = fake
    async with client_for(address) as client:
        done = await client.cancel_agent_execution(ID, reason="why not")
        assert done.phase is Phase.CANCELLED and done.cancel_reason == "why not"
        assert done.cancel_requested_at == datetime.fromtimestamp(1_800_000_000, UTC)
        await client.cancel_agent_execution(ID, requested_by="")  # "" is sent: the server records "anonymous"
        await client.cancel_workflow_execution(WEX_ID, requested_by="bot", wait=True)  # CANCELLED: nothing to wait
        await client.delete_agent_execution(ID)
        await client.delete_agent_execution(ID, force=True)
        assert (await client.delete_workflow_execution(WEX_ID, force=True)).phase is Phase.FAILED
        assert (await client.delete_workflow("hello")).name == "hello"
    cancels = rec.seen["aex.Cancel"]
    assert cancels[0].requested_by == f"{getpass.getuser()}@{socket.gethostname()}" and cancels[0].reason == "why not"
    assert cancels[1].requested_by == ""
    assert rec.seen["wex.Cancel"][0].requested_by == "bot"
    assert [(d.id, d.force) for d in rec.seen["aex.Delete"]] == [(ID, False), (ID, True)]
    assert rec.seen["wex.Delete"][0].force and rec.seen["wf.Delete"][0].id_or_name == "hello"


def test_the_default_requester_survives_a_user_it_cannot_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert _transport.requester(None) == f"unknown@{socket.gethostname()}"
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 400)
    assert len(_transport.requester(None).encode()) == 256  # within the server's cap
    assert _transport.requester("me") == "me"


def test_a_force_delete_allows_the_server_its_wait() -> None:
    client = AsyncClient(address="127.0.0.1:1", token="", timeout=5)
    assert client._delete_deadline(False, None) is None  # the client's own timeout
    assert client._delete_deadline(True, None) == FORCE_DELETE_DEADLINE
    assert client._delete_deadline(True, 3.0) == 3.0  # given: as given


def _parameters(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_sync_face_has_every_method_of_the_async_one_with_the_same_parameters() -> None:
    public = [n for n, _ in inspect.getmembers(AsyncClient, callable) if not n.startswith("_")]
    assert {"cancel_agent_execution", "delete_workflow", "delete_workflow_execution"} <= set(public)
    for name in public:
        assert hasattr(Client, name), f"Client has no {name}"
        assert _parameters(getattr(Client, name)) == _parameters(getattr(AsyncClient, name)), name
