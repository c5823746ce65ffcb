"""TcpProxy's HTTP/2-aware modes: DROP_REPLIES (the request lands, its answer is lost) and STALL
(nothing passes for a while, nothing is lost), against a real grpc.aio server and an echo server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from stigmer.testing.eventually import eventually
from tests.conftest import TcpProxyFactory
from tests.support.tcp_proxy import (
    HTTP2_DATA,
    HTTP2_END_STREAM,
    HTTP2_HEADERS,
    HTTP2_PREFACE,
    HTTP2_SETTINGS,
    Http2Frames,
    ProxyMode,
)
from tests.unit.test_tcp_proxy import IO_TIMEOUT, SILENCE, EchoServer, close, connect, roundtrip

CALL = 5.0
#: No transparent retry: the test decides when a call is repeated. Reconnect quickly after a reset.
CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def frame(type: int, payload: bytes = b"", *, flags: int = 0, stream: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([type, flags]) + stream.to_bytes(4, "big") + payload


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    server.server = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    yield server
    server.server.close()


# ---------------------------------------------------------------------------------------- the frame reader


def test_frames_are_found_whatever_the_chunking() -> None:
    client_bytes = (
        HTTP2_PREFACE
        + frame(HTTP2_SETTINGS, b"\x00\x03\x00\x00\x00\x64")
        + frame(HTTP2_HEADERS, b"h" * 40, stream=1)
        + frame(HTTP2_DATA, b"d" * 300, flags=HTTP2_END_STREAM, stream=1)
    )
    expected = [(HTTP2_SETTINGS, 0, 0), (HTTP2_HEADERS, 0, 1), (HTTP2_DATA, HTTP2_END_STREAM, 1)]
    for size in (1, 2, 7, 9, 10, 64, len(client_bytes)):
        reader = Http2Frames(client=True)
        seen, offsets = [], []
        for at in range(0, len(client_bytes), size):
            for f in reader.feed(client_bytes[at : at + size]):
                seen.append((f.type, f.flags, f.stream))
                offsets.append(at + f.offset)  # where the frame starts in the whole stream
        assert seen == expected, size
        assert reader.http2
        headers_at = len(HTTP2_PREFACE) + 9 + 6
        assert offsets == [len(HTTP2_PREFACE), headers_at, headers_at + 9 + 40], size


def test_bytes_that_are_not_http2_turn_the_reader_off() -> None:
    client = Http2Frames(client=True)
    assert client.feed(b"GET / HTTP/1.1\r\n\r\n" + frame(HTTP2_HEADERS, stream=1)) == []
    assert not client.http2
    server = Http2Frames(client=False)  # a server opens with SETTINGS
    assert server.feed(frame(HTTP2_HEADERS, stream=1)) == []
    assert not server.http2


# ---------------------------------------------------------------------------------------- DROP_REPLIES


class CountingHealth(health.HealthServicer):
    """A health service that counts the checks it answered."""

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=True)
        self.checks = 0

    def Check(self, request: health_pb2.HealthCheckRequest, context: object) -> health_pb2.HealthCheckResponse:
        self.checks += 1
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
async def grpc_server() -> AsyncIterator[tuple[str, CountingHealth]]:
    server = grpc.aio.server()
    servicer = CountingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(grace=None)


async def test_drop_replies_lets_the_request_land_and_loses_its_answer(
    grpc_server: tuple[str, CountingHealth], tcp_proxy_factory: TcpProxyFactory
) -> None:
    address, servicer = grpc_server
    proxy = tcp_proxy_factory(address)
    request = health_pb2.HealthCheckRequest(service="")
    async with grpc.aio.insecure_channel(proxy.address, options=CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert (await stub.Check(request, timeout=CALL)).status == health_pb2.HealthCheckResponse.SERVING
        assert (proxy.requests_forwarded, proxy.replies_dropped) == (1, 0)

        proxy.drop_replies()
        assert proxy.mode is ProxyMode.DROP_REPLIES
        # Every answer is lost, on the connection the channel had and on new ones. A call may also
        # fail on a connection just reset that the channel has not yet given up (sendmsg: broken
        # pipe): that one never reached the server. So: call until three answers were dropped.
        calls = 0
        while proxy.replies_dropped < 3 and calls < 10:
            calls += 1
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Check(request, timeout=CALL, wait_for_ready=True)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value
        assert proxy.replies_dropped == 3, calls
        assert servicer.checks == 1 + 3  # the server handled each request whose answer was lost, and only those

        proxy.forward()  # the same channel reconnects and gets answers again

        async def answered() -> bool:
            try:
                reply = await stub.Check(request, timeout=CALL, wait_for_ready=True)
            except grpc.aio.AioRpcError as error:  # the race above, once more
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
                return False
            return reply.status == health_pb2.HealthCheckResponse.SERVING

        await eventually(answered, timeout=CALL, what="an answer through the forwarding proxy")
    assert servicer.checks == 5
    assert proxy.replies_dropped == 3


async def test_drop_replies_passes_bytes_that_are_not_http2(
    echo: EchoServer, tcp_proxy_factory: TcpProxyFactory
) -> None:
    proxy = tcp_proxy_factory(echo.address)
    proxy.drop_replies()
    stream = await connect(proxy)
    assert await roundtrip(stream, b"plain bytes") == b"plain bytes"
    assert proxy.replies_dropped == 0
    close(stream)


# ---------------------------------------------------------------------------------------- STALL


async def test_stall_holds_everything_and_loses_nothing(echo: EchoServer, tcp_proxy_factory: TcpProxyFactory) -> None:
    proxy = tcp_proxy_factory(echo.address)
    existing = await connect(proxy)
    assert await roundtrip(existing, b"before") == b"before"

    proxy.stall()
    fresh = await connect(proxy)  # connects succeed during a stall
    payloads = {id(existing): b"kept " * 20_000, id(fresh): b"fresh"}
    for stream in (existing, fresh):
        stream[1].write(payloads[id(stream)])
        await stream[1].drain()
    for reader, _ in (existing, fresh):  # nothing comes back yet
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), SILENCE)
    assert echo.received == len(b"before")

    proxy.forward()  # everything kept is passed on, in order, both ways
    got_existing = await asyncio.wait_for(existing[0].readexactly(len(payloads[id(existing)])), IO_TIMEOUT)
    got_fresh = await asyncio.wait_for(fresh[0].readexactly(len(payloads[id(fresh)])), IO_TIMEOUT)
    assert (got_existing, got_fresh) == (payloads[id(existing)], payloads[id(fresh)])
    await eventually(lambda: echo.received == len(b"before") + 100_005, what="the echo server got it all")
    for stream in (existing, fresh):
        close(stream)


async def test_a_stalled_grpc_call_completes_once_the_stall_ends(
    grpc_server: tuple[str, CountingHealth], tcp_proxy_factory: TcpProxyFactory
) -> None:
    address, servicer = grpc_server
    proxy = tcp_proxy_factory(address)
    request = health_pb2.HealthCheckRequest(service="")
    async with grpc.aio.insecure_channel(proxy.address, options=CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(request, timeout=CALL)
        proxy.stall()
        call = asyncio.ensure_future(stub.Check(request, timeout=CALL))
        # The call reached the proxy and waits there: the server has not seen it.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(call), SILENCE)
        assert servicer.checks == 1
        proxy.forward()
        assert (await call).status == health_pb2.HealthCheckResponse.SERVING
    assert servicer.checks == 2
