"""Exactly-once creates (issue 14): a create whose reply was lost, retried with its request_id,
makes one record and one Temporal workflow, and the retry answers with the first attempt's record.

The rig, shared by the module: a Temporal dev server of its own (in memory: every workflow in it
is this module's, so they can be counted), a stigmer server process that reaches it through a
TcpProxy (``temporal_path``, stalled by the in-flight tests), and a TcpProxy in front of the
server (``front``) that the client goes through. The fault: ``front.drop_replies()`` passes the
client's request to the server and resets the connection when the server begins its answer (the
HTTP/2 HEADERS frame a gRPC server sends once the handler has returned), so the create has
happened and the client sees UNAVAILABLE. Then the proxy forwards again and the client sends the
same request (same request_id, same body) once more.

The client's channel has retries off (``grpc.enable_retries`` 0): the only repeat is the test's.
Twenty runs of each kind in one session, sharing the rig (the issue's "20 in a row").
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus

from stigmer.api import (
    agent_execution_pb2,
    agent_execution_pb2_grpc,
    common_pb2,
    workflow_execution_pb2,
    workflow_execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from stigmer.temporal import names
from stigmer.testing.eventually import eventually
from stigmer.testing.factories import StigmerServerFactory, TemporalDevServerFactory, close_all
from stigmer.testing.server import StigmerServerProcess
from stigmer.testing.temporal import TemporalDevServer
from tests.support.tcp_proxy import ProxyMode, TcpProxy

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(120)]

RUNS = 20
CALL = 15.0  # one unary call; a create waits for Temporal at most the server's 10 s start deadline
SETTLE = 30.0  # an execution reaches its terminal phase; Temporal's visibility catches up
#: No transparent retries (the test decides what is repeated); reconnect quickly after a reset.
CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
WORKFLOW_NAME = "exactly-once"
WORKFLOW_DOCUMENT = json.dumps({
    "name": WORKFLOW_NAME,
    "tasks": [
        {"name": "greet", "kind": "set", "values": {"greeting": "hi ${input.user}"}},
        {"name": "ask", "kind": "agent", "agent": "echo", "message": "${greeting}"},
    ],
})  # fmt: skip
KINDS = ("agent", "workflow")
WORKFLOW_TYPE = {"agent": names.AGENT_EXECUTION_WORKFLOW, "workflow": names.WORKFLOW_EXECUTION_WORKFLOW}


@dataclass
class Rig:
    temporal: TemporalDevServer
    temporal_path: TcpProxy  # stigmer -> Temporal
    stigmer: StigmerServerProcess
    front: TcpProxy  # client -> stigmer


@pytest.fixture(scope="module")
def temporal_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServerFactory]:
    factory = TemporalDevServerFactory(tmp_path_factory.mktemp("exactly-once-temporal"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StigmerServerFactory]:
    factory = StigmerServerFactory(tmp_path_factory.mktemp("exactly-once-stigmer"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def rig(temporal_factory: TemporalDevServerFactory, server_factory: StigmerServerFactory) -> Iterator[Rig]:
    temporal = temporal_factory()
    proxies: list[TcpProxy] = []
    try:
        temporal_path = TcpProxy(target=temporal.address)
        proxies.append(temporal_path.start())
        stigmer = server_factory(temporal=temporal_path.address)
        front = TcpProxy(target=stigmer.address)
        proxies.append(front.start())
        waited = stigmer.cli("server", "wait", "--timeout", "30", timeout=40)
        assert waited.code == 0, waited.text
        with grpc.insecure_channel(stigmer.address) as channel:
            made = workflow_pb2_grpc.WorkflowServiceStub(channel).Create(
                workflow_pb2.CreateWorkflowRequest(document=WORKFLOW_DOCUMENT), timeout=CALL
            )
        assert made.validation.valid, made.validation.errors
        yield Rig(temporal=temporal, temporal_path=temporal_path, stigmer=stigmer, front=front)
    finally:
        close_all([proxy.close for proxy in reversed(proxies)])


@pytest.fixture
def forwarding(rig: Rig) -> Iterator[Rig]:
    """The rig with both proxies forwarding, before and after the test, whatever it did."""
    rig.front.forward()
    rig.temporal_path.forward()
    try:
        yield rig
    finally:
        rig.front.forward()
        rig.temporal_path.forward()


# ---------------------------------------------------------------------------------------- helpers


class Api:
    """Both execution services on one grpc.aio channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.agents = agent_execution_pb2_grpc.AgentExecutionServiceStub(channel)
        self.workflows = workflow_execution_pb2_grpc.WorkflowExecutionServiceStub(channel)

    def create(self, kind: str) -> Callable[..., Awaitable[Any]]:
        return self.agents.Create if kind == "agent" else self.workflows.Create

    async def get(self, kind: str, id: str) -> Any:
        if kind == "agent":
            return await self.agents.Get(agent_execution_pb2.GetAgentExecutionRequest(id=id), timeout=CALL)
        return await self.workflows.Get(workflow_execution_pb2.GetWorkflowExecutionRequest(id=id), timeout=CALL)

    async def all(self, kind: str, *, since: float) -> list[Any]:
        """Every record of a kind (steps too) created at or after ``since`` (time.time())."""
        after = _timestamp(since - 0.001)
        items: list[Any] = []
        token = ""
        while True:
            if kind == "agent":
                page: Any = await self.agents.List(
                    agent_execution_pb2.ListAgentExecutionsRequest(
                        page_size=1000, page_token=token, created_after=after
                    ),
                    timeout=CALL,
                )
            else:
                page = await self.workflows.List(
                    workflow_execution_pb2.ListWorkflowExecutionsRequest(
                        page_size=1000, page_token=token, created_after=after
                    ),
                    timeout=CALL,
                )
            items.extend(page.executions)
            token = page.next_page_token
            if not token:
                return items


def _timestamp(seconds: float) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def request_for(kind: str, request_id: str, tag: str) -> Any:
    if kind == "agent":
        return agent_execution_pb2.CreateAgentExecutionRequest(
            agent="echo", message=f"exactly once {tag}", runtime_env={"TAG": tag}, request_id=request_id
        )
    return workflow_execution_pb2.CreateWorkflowExecutionRequest(
        workflow=WORKFLOW_NAME, input=json.dumps({"user": tag}), request_id=request_id
    )


def seconds(stamp: Any) -> float:
    return float(stamp.ToNanoseconds()) / 1e9


async def temporal_runs(client: TemporalClient, query: str) -> list[WorkflowExecutionStatus | None]:
    return [w.status async for w in client.list_workflows(query=query, page_size=100)]


async def assert_one_record_and_one_workflow(
    api: Api, temporal: TemporalClient, kind: str, record: Any, *, since: float
) -> None:
    """The store holds one record for the request, it ran to COMPLETED once, and Temporal ran one
    workflow for it and none for anything else created since ``since`` but its steps."""
    listed = await api.all(kind, since=since)
    same_request = [r.id for r in listed if r.request_id == record.request_id]
    assert same_request == [record.id], f"records for request {record.request_id}: {same_request}"
    # The rig is this module's and its tests run one by one: nothing else made a record meanwhile.
    made = [r.id for r in listed if not getattr(r, "parent_id", "")]
    assert made == [record.id], f"records created since the test began: {made}"

    async def completed() -> Any:
        current = await api.get(kind, record.id)
        assert current.phase in (common_pb2.PENDING, common_pb2.IN_PROGRESS, common_pb2.COMPLETED), current
        return current if current.phase == common_pb2.COMPLETED else False  # None would mean done

    done = await eventually(completed, timeout=SETTLE, interval=0.05, what=f"{record.id} COMPLETED")
    if kind == "agent":  # the agent ran once: one reply
        assert [(m.role, m.text) for m in done.messages] == [
            ("user", record.message),
            ("agent", f"[echo] {record.message}"),
        ]
    else:
        steps = [r for r in await api.all("agent", since=since) if r.parent_id == record.id]
        assert [s.phase for s in steps] == [common_pb2.COMPLETED], steps

    workflow_id = record.temporal_workflow_id
    assert workflow_id == f"{WORKFLOW_TYPE[kind]}/{record.id}"
    # Visibility lags a little behind Temporal's history: wait until it lists the run, closed.
    runs = await settled_runs(temporal, f'WorkflowId = "{workflow_id}"', at_least=1)
    assert runs == [WorkflowExecutionStatus.COMPLETED], f"runs of {workflow_id}: {runs}"
    # Nothing else was started meanwhile: as many workflows of each type as records since `since`.
    started = datetime.fromtimestamp(since, UTC).isoformat()
    for of_kind in KINDS:
        records = await api.all(of_kind, since=since)
        query = f'WorkflowType = "{WORKFLOW_TYPE[of_kind]}" AND StartTime >= "{started}"'
        workflows = await settled_runs(temporal, query, at_least=len(records))
        assert len(workflows) == len(records), f"{of_kind}: {len(workflows)} workflows for {len(records)} records"


async def settled_runs(temporal: TemporalClient, query: str, *, at_least: int) -> list[WorkflowExecutionStatus | None]:
    """The statuses of the runs ``query`` lists, once it lists ``at_least`` and none is running."""

    async def listed() -> tuple[list[WorkflowExecutionStatus | None]] | bool:
        runs = await temporal_runs(temporal, query)
        return (runs,) if len(runs) >= at_least and WorkflowExecutionStatus.RUNNING not in runs else False

    found = await eventually(listed, timeout=SETTLE, what=f"Temporal to list {at_least}+ closed runs: {query}")
    assert isinstance(found, tuple)
    return found[0]


async def answered(create: Callable[..., Awaitable[Any]], request: Any) -> Any:
    """The server's answer to ``request``, sent again while a call fails UNAVAILABLE before reaching
    it: right after the proxy reset the connection, the channel may still pick that connection
    for the next call (grpc: 'Stream removed (sendmsg: Broken pipe)'), as a client's retry would
    meet it too, and repeat it with the same request_id."""

    async def reply() -> Any:
        try:
            return await create(request, timeout=CALL, wait_for_ready=True)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                raise  # an answer, and not the one expected: at once, not at the deadline
            return False

    return await eventually(reply, timeout=CALL, interval=0.05, what="the retried create answered")


# ---------------------------------------------------------------------------------------- the fault test


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("kind", KINDS)
async def test_a_create_whose_reply_was_lost_is_answered_by_its_retry(forwarding: Rig, kind: str, run: int) -> None:
    rig = forwarding
    request_id = str(uuid.uuid4())
    request = request_for(kind, request_id, f"{kind}-{run}-{request_id[:8]}")
    since = time.time()
    temporal = await TemporalClient.connect(rig.temporal.address)
    async with (
        grpc.aio.insecure_channel(rig.front.address, options=CHANNEL_OPTIONS) as channel,
        grpc.aio.insecure_channel(rig.stigmer.address, options=CHANNEL_OPTIONS) as direct,
    ):
        create = Api(channel).create(kind)
        dropped = rig.front.replies_dropped
        rig.front.drop_replies()
        try:
            with pytest.raises(grpc.aio.AioRpcError) as lost:
                await create(request, timeout=CALL, wait_for_ready=True)
        finally:
            rig.front.forward()
        assert lost.value.code() is grpc.StatusCode.UNAVAILABLE, lost.value
        assert rig.front.replies_dropped == dropped + 1  # the server answered; the answer was lost

        retried_at = time.time()
        record = await answered(create, request)
        assert record.request_id == request_id
        # The record is the first attempt's: it existed before the retry was sent.
        assert since <= seconds(record.created_at) < retried_at, (since, seconds(record.created_at), retried_at)
        await assert_one_record_and_one_workflow(Api(direct), temporal, kind, record, since=since)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_retry_while_the_first_start_is_in_flight_gets_the_same_execution(forwarding: Rig, kind: str) -> None:
    """Temporal's path is stalled, so the first create's start is in flight for as long as the test
    wants: its record is visible (it is stored before the start), and its start cannot have
    finished. The retry is sent then and reaches the server; then the path is released. Both
    answers are the same execution; one record, one workflow.

    Which way the server takes for the retry (await the first attempt's start, or find the record
    and start again, a no-op in Temporal) depends on whether it read the retry before the release;
    the outcome is the same either way, and it is what is asserted."""
    rig = forwarding
    request_id = str(uuid.uuid4())
    request = request_for(kind, request_id, f"{kind}-inflight-{request_id[:8]}")
    since = time.time()
    temporal = await TemporalClient.connect(rig.temporal.address)
    async with (
        grpc.aio.insecure_channel(rig.front.address, options=CHANNEL_OPTIONS) as front_channel,
        grpc.aio.insecure_channel(rig.stigmer.address, options=CHANNEL_OPTIONS) as direct,
    ):
        api = Api(direct)
        await api.all(kind, since=since)  # both channels connected before the clock starts
        await Api(front_channel).all(kind, since=since)
        rig.temporal_path.stall()
        try:
            first = asyncio.ensure_future(api.create(kind)(request, timeout=CALL))

            async def stored() -> list[Any]:
                return [r for r in await api.all(kind, since=since) if r.request_id == request_id]

            await eventually(stored, timeout=CALL, interval=0.02, what="the first attempt's record")
            assert not first.done(), "the first create finished while Temporal's path was stalled"
            forwarded = rig.front.requests_forwarded
            second = asyncio.ensure_future(Api(front_channel).create(kind)(request, timeout=CALL))
            await eventually(
                lambda: rig.front.requests_forwarded > forwarded, timeout=CALL, interval=0.01, what="the retry sent"
            )
            assert not first.done() and not second.done()
        finally:
            rig.temporal_path.forward()
        answers = await asyncio.gather(first, second)
    assert rig.temporal_path.mode is ProxyMode.FORWARD
    assert [a.id for a in answers] == [answers[0].id] * 2 and answers[0].request_id == request_id
    async with grpc.aio.insecure_channel(rig.stigmer.address, options=CHANNEL_OPTIONS) as direct:
        await assert_one_record_and_one_workflow(Api(direct), temporal, kind, answers[0], since=since)


async def test_the_same_request_id_with_another_body_is_already_exists(forwarding: Rig) -> None:
    request_id = str(uuid.uuid4())
    async with grpc.aio.insecure_channel(forwarding.stigmer.address, options=CHANNEL_OPTIONS) as channel:
        create = Api(channel).create("agent")
        first = await create(request_for("agent", request_id, "body-a"), timeout=CALL)
        with pytest.raises(grpc.aio.AioRpcError) as clash:
            await create(request_for("agent", request_id, "body-b"), timeout=CALL)
        assert clash.value.code() is grpc.StatusCode.ALREADY_EXISTS
        assert first.id in (clash.value.details() or ""), clash.value.details()
        # Upper case is the same UUID.
        again = await create(request_for("agent", request_id.upper(), "body-a"), timeout=CALL)
        assert again.id == first.id
