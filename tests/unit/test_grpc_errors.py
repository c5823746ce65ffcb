"""@grpc_errors through a real grpc.aio channel: every controller error gets its status code.

A small servicer raises each error on demand (no Temporal, no store): the request's `agent`
field picks the error, `message` the point in a Watch stream where it is raised.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from loguru import logger

from stigmer.api import agent_execution_pb2 as pb
from stigmer.api import agent_execution_pb2_grpc as pb_grpc
from stigmer.errors import (
    UNAVAILABLE_MESSAGE,
    AlreadyExistsError,
    DatabaseError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StoreFullError,
    TemporalUnavailableError,
)
from stigmer.server.errors import INTERNAL_MESSAGE, RETRY_AFTER_KEY, STATE_KEY, grpc_errors, retry_after_seconds
from stigmer.server.servicers import AgentExecutionServicer
from stigmer.store import AgentExecution, Phase

TIMEOUT = 5.0
SECRET = "secret-internal-detail-7f3a"

ERRORS: dict[str, Exception] = {
    "invalid": InvalidArgumentError("message", "required"),
    "not_found": NotFoundError("agent execution", "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD"),
    "exists": AlreadyExistsError("a workflow named 'w' already exists"),
    "precondition": FailedPreconditionError("workflow 'w' failed validation"),
    "unavailable": TemporalUnavailableError(state="UNHEALTHY", retry_after=2.1),
    "unavailable_soon": TemporalUnavailableError(state="RECONNECTING", retry_after=0.0),
    "bug": KeyError(SECRET),
    "disk_full": StoreFullError("could not create agent execution x: the disk holding /d/stigmer.db is full"),
    "read_only": DatabaseError("could not create agent execution x: /d/stigmer.db cannot be opened for writing"),
}


class Raising(pb_grpc.AgentExecutionServiceServicer):
    @grpc_errors
    async def Create(self, request: pb.CreateAgentExecutionRequest, context: Any) -> pb.AgentExecution:
        if request.agent == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "aborted on purpose")
        if request.agent in ERRORS:
            raise ERRORS[request.agent]
        return pb.AgentExecution(agent=request.agent, message=request.message)

    @grpc_errors
    async def Watch(self, request: pb.WatchAgentExecutionRequest, context: Any) -> AsyncIterator[pb.AgentExecution]:
        kind, _, after = request.id.partition("@")
        for n in range(3):
            if str(n) == after:
                raise ERRORS[kind]
            yield pb.AgentExecution(id=f"item-{n}")


@pytest.fixture
async def stub() -> AsyncIterator[pb_grpc.AgentExecutionServiceStub]:
    server = grpc.aio.server()
    pb_grpc.add_AgentExecutionServiceServicer_to_server(Raising(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield pb_grpc.AgentExecutionServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(grace=None)


@pytest.fixture
def errors_logged() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="ERROR", format="{message}\n{exception}")
    yield lines
    logger.remove(sink)


async def call_create(stub: pb_grpc.AgentExecutionServiceStub, agent: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Create(pb.CreateAgentExecutionRequest(agent=agent, message="m"), timeout=TIMEOUT)
    return info.value


@pytest.mark.parametrize(
    ("agent", "code", "details"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "message: required"),
        ("not_found", grpc.StatusCode.NOT_FOUND, "agent execution aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD not found"),
        ("exists", grpc.StatusCode.ALREADY_EXISTS, "a workflow named 'w' already exists"),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION, "workflow 'w' failed validation"),
        ("abort", grpc.StatusCode.PERMISSION_DENIED, "aborted on purpose"),
        # A storage failure is the operator's to fix, and says how; never INTERNAL, never UNAVAILABLE.
        ("disk_full", grpc.StatusCode.RESOURCE_EXHAUSTED, str(ERRORS["disk_full"])),
        ("read_only", grpc.StatusCode.FAILED_PRECONDITION, str(ERRORS["read_only"])),
    ],
)
async def test_controller_errors_map_to_their_codes(stub, agent, code, details) -> None:
    error = await call_create(stub, agent)
    assert (error.code(), error.details()) == (code, details)


async def test_success_passes_through(stub) -> None:
    reply = await stub.Create(pb.CreateAgentExecutionRequest(agent="ok", message="héllo"), timeout=TIMEOUT)
    assert (reply.agent, reply.message) == ("ok", "héllo")


@pytest.mark.parametrize(
    ("agent", "state", "retry_after"), [("unavailable", "UNHEALTHY", "3"), ("unavailable_soon", "RECONNECTING", "1")]
)
async def test_unavailable_carries_the_exact_message_and_trailing_metadata(stub, agent, state, retry_after) -> None:
    error = await call_create(stub, agent)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == UNAVAILABLE_MESSAGE
    trailers = dict(error.trailing_metadata() or ())
    assert trailers[STATE_KEY] == state
    assert trailers[RETRY_AFTER_KEY] == retry_after


async def test_a_bug_is_internal_without_details_and_logged_once_with_its_traceback(stub, errors_logged) -> None:
    error = await call_create(stub, "bug")
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    assert SECRET not in (error.debug_error_string() or "")
    logged = [line for line in errors_logged if "Unhandled error" in line]
    assert len(logged) == 1, errors_logged
    assert "Raising.Create" in logged[0] and "KeyError" in logged[0] and SECRET in logged[0]


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("unavailable", grpc.StatusCode.UNAVAILABLE),
        ("bug", grpc.StatusCode.INTERNAL),
    ],
)
@pytest.mark.parametrize("after", [0, 2])
async def test_streams_map_errors_raised_before_and_after_items(stub, kind, code, after) -> None:
    call = stub.Watch(pb.WatchAgentExecutionRequest(id=f"{kind}@{after}"), timeout=TIMEOUT)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for item in call:
            received.append(item.id)
    assert received == [f"item-{n}" for n in range(after)]
    assert info.value.code() == code
    if code is grpc.StatusCode.INTERNAL:
        assert info.value.details() == INTERNAL_MESSAGE


async def test_a_stream_without_errors_ends_normally(stub) -> None:
    items = [item.id async for item in stub.Watch(pb.WatchAgentExecutionRequest(id="none"), timeout=TIMEOUT)]
    assert items == ["item-0", "item-1", "item-2"]


class Refusing(pb_grpc.AgentExecutionServiceServicer):
    """Raises a fresh error per call, as the controllers do."""

    @grpc_errors
    async def Create(self, request: pb.CreateAgentExecutionRequest, context: Any) -> pb.AgentExecution:
        if request.agent == "unavailable":
            raise TemporalUnavailableError(state="UNHEALTHY", retry_after=1.0)
        raise InvalidArgumentError("message", f"{len(request.message)} characters is too many")

    @grpc_errors
    async def Watch(self, request: pb.WatchAgentExecutionRequest, context: Any) -> AsyncIterator[pb.AgentExecution]:
        yield pb.AgentExecution(id=request.id)
        raise NotFoundError("agent execution", request.id)


async def test_a_refused_request_is_freed_at_once() -> None:
    """Found by tests/fuzz (oversized messages): with context.abort() grpc kept each refused
    request in a reference cycle until the garbage collector ran (~7 MiB per 3 MiB request)."""

    def alive() -> int:
        kinds = (pb.CreateAgentExecutionRequest, pb.WatchAgentExecutionRequest)
        return sum(1 for o in gc.get_objects() if isinstance(o, kinds))

    server = grpc.aio.server()
    pb_grpc.add_AgentExecutionServiceServicer_to_server(Refusing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes = []
    gc.collect()
    gc.disable()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.AgentExecutionServiceStub(channel)
            before = alive()
            # Plain try/except, not pytest.raises: its saved traceback would keep our side's request.
            for agent in ("echo", "unavailable"):
                try:
                    await stub.Create(pb.CreateAgentExecutionRequest(agent=agent, message="m" * 100_000),
                                      timeout=TIMEOUT)  # fmt: skip
                except grpc.aio.AioRpcError as error:
                    codes.append(error.code())
                try:
                    async for _ in stub.Watch(pb.WatchAgentExecutionRequest(id=agent), timeout=TIMEOUT):
                        pass
                except grpc.aio.AioRpcError as error:
                    codes.append(error.code())
            assert alive() == before
    finally:
        gc.enable()
        await server.stop(grace=None)
    code = grpc.StatusCode
    assert codes == [code.INVALID_ARGUMENT, code.NOT_FOUND, code.UNAVAILABLE, code.NOT_FOUND]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (29.5, 30), (float("inf"), 1), (float("nan"), 1), (-3.0, 1)],
)
def test_retry_after_is_whole_seconds_at_least_one(value: float, expected: int) -> None:
    assert retry_after_seconds(value) == expected


def test_decorating_a_plain_function_is_refused() -> None:
    with pytest.raises(TypeError, match="async def"):

        @grpc_errors
        def Get(self: object, request: object, context: object) -> None: ...


async def test_closing_a_stream_closes_the_inner_generators_at_once() -> None:
    """When grpc stops iterating (client gone), cleanup in the controller's watch must run now."""
    closed: list[str] = []

    class Controller:
        def watch(self, id: str) -> AsyncIterator[Any]:
            async def records() -> AsyncIterator[Any]:
                try:
                    while True:
                        yield _record(id)
                finally:
                    closed.append(id)

            return records()

    servicer = AgentExecutionServicer(Controller())  # type: ignore[arg-type]
    stream = servicer.Watch(pb.WatchAgentExecutionRequest(id="aex-x"), context=None)
    first = await stream.__anext__()
    assert first.id == "aex-x" and closed == []
    await stream.aclose()
    assert closed == ["aex-x"]


def _record(id: str) -> AgentExecution:
    return AgentExecution(
        id=id,
        agent="a",
        message="m",
        runtime_env={},
        phase=Phase.PENDING,
        messages=(),
        error="",
        created_at=0.0,
        started_at=None,
        completed_at=None,
        workflow_id="",
        parent_id="",
        version=1,
    )
