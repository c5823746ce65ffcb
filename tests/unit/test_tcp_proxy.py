"""TcpProxy modes against a tiny local echo server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from stigmer.testing.eventually import eventually
from stigmer.testing.ports import is_port_free
from tests.conftest import TcpProxyFactory
from tests.support.tcp_proxy import ProxyMode, TcpProxy

IO_TIMEOUT = 2.0
SILENCE = 0.3  # how long a blackholed read must stay silent to count as "times out"

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class EchoServer:
    def __init__(self) -> None:
        self.received = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    server.server = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    yield server
    server.server.close()


async def connect(proxy: TcpProxy) -> Stream:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.port), IO_TIMEOUT)


async def roundtrip(stream: Stream, payload: bytes) -> bytes:
    reader, writer = stream
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), IO_TIMEOUT)


async def assert_silent(stream: Stream) -> None:
    reader, writer = stream
    writer.write(b"anyone there?")
    await writer.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), SILENCE)


async def assert_reset(stream: Stream) -> None:
    """The connection was torn down: the next read fails or sees EOF, promptly."""
    reader, _ = stream
    try:
        data = await asyncio.wait_for(reader.read(1), IO_TIMEOUT)
    except ConnectionResetError:
        return
    assert data == b""


def close(stream: Stream) -> None:
    stream[1].close()


async def test_forward_echoes_and_counts(echo: EchoServer, tcp_proxy_factory: TcpProxyFactory) -> None:
    proxy = tcp_proxy_factory(echo.address)
    assert proxy.mode is ProxyMode.FORWARD
    stream = await connect(proxy)
    assert await roundtrip(stream, b"hello") == b"hello"
    assert await roundtrip(stream, b"x" * 200_000) == b"x" * 200_000
    assert proxy.connections_accepted == 1
    await eventually(lambda: proxy.bytes_forwarded == 2 * 200_005, what="both directions counted")
    close(stream)
    await eventually(lambda: proxy.active_connections == 0, what="closed link forgotten")


async def test_refuse_resets_existing_and_fails_new_connects_fast(
    echo: EchoServer, tcp_proxy_factory: TcpProxyFactory
) -> None:
    proxy = tcp_proxy_factory(echo.address)
    existing = await connect(proxy)
    assert await roundtrip(existing, b"ping") == b"ping"

    proxy.refuse()
    await assert_reset(existing)
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy)
    assert time.monotonic() - started < 0.5

    proxy.forward()  # listens again on the same port
    fresh = await connect(proxy)
    assert await roundtrip(fresh, b"back") == b"back"
    close(fresh)


async def test_blackhole_accepts_but_never_answers(echo: EchoServer, tcp_proxy_factory: TcpProxyFactory) -> None:
    proxy = tcp_proxy_factory(echo.address)
    existing = await connect(proxy)
    assert await roundtrip(existing, b"ping") == b"ping"
    received_before = echo.received

    proxy.blackhole()
    await assert_silent(existing)
    fresh = await connect(proxy)  # connect succeeds ...
    await assert_silent(fresh)  # ... but nothing ever comes back
    assert echo.received == received_before  # and nothing reached the server
    assert proxy.bytes_forwarded == 8

    proxy.forward()
    # Streams that lost bytes cannot resume: they are reset; new connections forward again.
    await assert_reset(existing)
    await assert_reset(fresh)
    again = await connect(proxy)
    assert await roundtrip(again, b"healed") == b"healed"
    close(again)


async def test_refuse_then_blackhole_listens_again(echo: EchoServer, tcp_proxy_factory: TcpProxyFactory) -> None:
    proxy = tcp_proxy_factory(echo.address)
    proxy.refuse()
    proxy.blackhole()
    stream = await connect(proxy)
    await assert_silent(stream)
    close(stream)


async def test_dead_upstream_resets_the_client(tcp_proxy_factory: TcpProxyFactory) -> None:
    with socket.socket() as placeholder:  # a port that nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{placeholder.getsockname()[1]}"
        proxy = tcp_proxy_factory(dead)
        try:
            stream = await connect(proxy)
        except ConnectionResetError:
            return  # the reset beat asyncio's connect completion (seen under CPU load)
        await assert_reset(stream)


async def test_a_holding_proxy_keeps_a_dead_upstream_silent(tcp_proxy_factory: TcpProxyFactory) -> None:
    with socket.socket() as placeholder:  # a port that nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        proxy = tcp_proxy_factory(f"127.0.0.1:{placeholder.getsockname()[1]}", upstream_down="hold")
        reader, writer = await connect(proxy)
        writer.write(b"anyone?")
        await writer.drain()
        with pytest.raises(TimeoutError):  # neither an answer nor a close: silence
            await asyncio.wait_for(reader.read(1), timeout=SILENCE)
        writer.close()


async def test_a_holding_proxy_hides_an_upstream_that_goes_away(tcp_proxy_factory: TcpProxyFactory) -> None:
    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(4))  # one answer, then the upstream closes, as a killed server's does
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(answer_once_then_close, "127.0.0.1", 0)
    try:
        port = upstream.sockets[0].getsockname()[1]
        proxy = tcp_proxy_factory(f"127.0.0.1:{port}", upstream_down="hold")
        reader, writer = await connect(proxy)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), timeout=IO_TIMEOUT) == b"ping"
        writer.write(b"more")
        with pytest.raises(TimeoutError):  # no EOF passed on: silence
            await asyncio.wait_for(reader.read(1), timeout=SILENCE)
        writer.close()
    finally:
        upstream.close()


@pytest.fixture
def echo_thread_address() -> Iterator[str]:
    """A blocking echo server for the sync test: one connection, in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    thread.join(timeout=IO_TIMEOUT)


def test_sync_use_and_close(echo_thread_address: str) -> None:
    with TcpProxy(target=echo_thread_address) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"sync")
            assert sock.recv(4) == b"sync"
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT)
    assert is_port_free(proxy.port)
    proxy.close()  # a second close is harmless
