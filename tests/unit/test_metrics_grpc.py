"""GrpcMetrics in a real grpc.aio server on 127.0.0.1 with small generic handlers: the final code of
unary and streaming calls (set, aborted, raised, cancelled, past their deadline), their durations,
calls the token check refuses, and unknown methods (not counted: no made-up label values)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stigmer.metrics import ServerMetrics
from stigmer.security import Secret
from stigmer.server.auth import BearerTokenAuth
from stigmer.testing.eventually import eventually

TOKEN = "metrics-test-token-0123456789"
SERVICE = "test.Metrics"


async def ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"ok"


async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes | None:
    context.set_code(grpc.StatusCode.UNAVAILABLE)  # as stigmer.server.errors.finish_with does
    context.set_details("Temporal workflow engine is unavailable")
    return None


async def abort(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no")


async def crash(request: bytes, context: grpc.aio.ServicerContext) -> None:
    raise ValueError("a bug")


async def items(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for part in (b"a", b"b"):
        yield part


async def items_then_not_found(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"a"
    context.set_code(grpc.StatusCode.NOT_FOUND)


async def forever(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    while True:
        yield b"tick"
        await asyncio.sleep(0.01)


async def written(request: bytes, context: grpc.aio.ServicerContext) -> None:
    """A stream written with context.write(), like grpc_health's Watch."""
    await context.write(b"one")
    await context.write(b"two")


HANDLERS = {
    "Ok": grpc.unary_unary_rpc_method_handler(ok),
    "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
    "Abort": grpc.unary_unary_rpc_method_handler(abort),
    "Crash": grpc.unary_unary_rpc_method_handler(crash),
    "Items": grpc.unary_stream_rpc_method_handler(items),
    "ItemsThenNotFound": grpc.unary_stream_rpc_method_handler(items_then_not_found),
    "Forever": grpc.unary_stream_rpc_method_handler(forever),
    "Written": grpc.unary_stream_rpc_method_handler(written),
}


async def serve(interceptors: list[grpc.aio.ServerInterceptor]) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, HANDLERS)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def counts(metrics: ServerMetrics) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition()):
        for s in family.samples:
            if s.name == "stigmer_grpc_requests_total":
                found[(s.labels["method"].removeprefix(SERVICE + "/"), s.labels["code"])] = s.value
    return found


def duration_count(metrics: ServerMetrics, method: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition()):
        for s in family.samples:
            if s.name == "stigmer_grpc_request_duration_seconds_count" and s.labels["method"] == f"{SERVICE}/{method}":
                return s.value
    return 0.0


async def unary(channel: grpc.aio.Channel, method: str, **kwargs: object) -> grpc.StatusCode:
    try:
        await channel.unary_unary(f"/{SERVICE}/{method}")(b"x", timeout=5, **kwargs)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def stream(channel: grpc.aio.Channel, method: str, *, timeout: float = 5) -> grpc.StatusCode:  # noqa: ASYNC109
    try:
        async for _ in channel.unary_stream(f"/{SERVICE}/{method}")(b"x", timeout=timeout):
            pass
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def until(condition: Callable[[], bool], *, what: str) -> None:
    """The server records a call when its handler ends, a moment after the client saw it end."""
    await eventually(condition, timeout=5, what=what)


@pytest.fixture
async def observed() -> AsyncIterator[tuple[ServerMetrics, grpc.aio.Channel]]:
    metrics = ServerMetrics()
    server, address = await serve([metrics.interceptor])
    channel = grpc.aio.insecure_channel(address)
    try:
        yield metrics, channel
    finally:
        await channel.close()
        await server.stop(grace=None)


async def test_unary_calls_are_counted_by_their_final_code(observed: tuple[ServerMetrics, grpc.aio.Channel]) -> None:
    metrics, channel = observed
    assert await unary(channel, "Ok") is grpc.StatusCode.OK
    assert await unary(channel, "Ok") is grpc.StatusCode.OK
    assert await unary(channel, "Refuse") is grpc.StatusCode.UNAVAILABLE
    assert await unary(channel, "Abort") is grpc.StatusCode.FAILED_PRECONDITION
    assert await unary(channel, "Crash") is grpc.StatusCode.UNKNOWN
    expected = {("Ok", "OK"): 2.0, ("Refuse", "UNAVAILABLE"): 1.0, ("Abort", "FAILED_PRECONDITION"): 1.0,
                ("Crash", "UNKNOWN"): 1.0}  # fmt: skip
    await until(lambda: counts(metrics) == expected, what="five unary calls counted")
    assert duration_count(metrics, "Ok") == 2.0 and duration_count(metrics, "Crash") == 1.0


async def test_streams_count_the_code_they_end_with(observed: tuple[ServerMetrics, grpc.aio.Channel]) -> None:
    metrics, channel = observed
    assert await stream(channel, "Items") is grpc.StatusCode.OK
    assert await stream(channel, "ItemsThenNotFound") is grpc.StatusCode.NOT_FOUND
    assert await stream(channel, "Written") is grpc.StatusCode.OK
    assert await stream(channel, "Forever", timeout=0.3) is grpc.StatusCode.DEADLINE_EXCEEDED
    call = channel.unary_stream(f"/{SERVICE}/Forever")(b"x", timeout=5)
    async for _ in call:
        break  # one item, then the client goes away
    call.cancel()
    expected = {("Items", "OK"): 1.0, ("ItemsThenNotFound", "NOT_FOUND"): 1.0, ("Written", "OK"): 1.0,
                ("Forever", "DEADLINE_EXCEEDED"): 1.0, ("Forever", "CANCELLED"): 1.0}  # fmt: skip
    await until(lambda: counts(metrics) == expected, what="every stream's end counted")
    assert duration_count(metrics, "Forever") == 2.0


async def test_unknown_methods_are_not_counted(observed: tuple[ServerMetrics, grpc.aio.Channel]) -> None:
    metrics, channel = observed
    try:
        await channel.unary_unary("/made.Up/Anything")(b"x", timeout=5)
    except grpc.aio.AioRpcError as err:
        assert err.code() is grpc.StatusCode.UNIMPLEMENTED
    assert await unary(channel, "Ok") is grpc.StatusCode.OK
    await until(lambda: counts(metrics) == {("Ok", "OK"): 1.0}, what="only the known method counted")


async def test_calls_the_token_check_refuses_are_counted_when_metrics_come_first() -> None:
    metrics = ServerMetrics()
    server, address = await serve([metrics.interceptor, BearerTokenAuth(Secret(TOKEN))])
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            assert await unary(channel, "Ok") is grpc.StatusCode.UNAUTHENTICATED
            assert await stream(channel, "Items") is grpc.StatusCode.UNAUTHENTICATED
            authorized = [("authorization", f"Bearer {TOKEN}")]
            assert await unary(channel, "Ok", metadata=authorized) is grpc.StatusCode.OK
        expected = {("Ok", "UNAUTHENTICATED"): 1.0, ("Items", "UNAUTHENTICATED"): 1.0, ("Ok", "OK"): 1.0}
        await until(lambda: counts(metrics) == expected, what="refused and accepted calls counted")
    finally:
        await server.stop(grace=None)
