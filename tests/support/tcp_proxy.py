"""A TCP proxy that can cut the path between a client and a server, for fault tests.

It runs its own event loop in its own thread, so sync tests and async tests (whatever their
loop) drive it through the same blocking methods; each returns once the mode is in effect.

Modes apply to new and existing connections alike:

* FORWARD   -- bytes flow both ways. Connections that lived through a blackhole are reset when
  forwarding resumes: their byte streams lost data and cannot be resumed, just as a TCP peer
  gives up on a path that was dead for too long. New connections forward normally.
* REFUSE    -- existing connections are reset (RST) and the listener is closed, so a new
  connect fails at once with ECONNREFUSED (like a server that is down).
* BLACKHOLE -- the listener accepts; every connection reads and discards all it receives and
  sends nothing, and a close on one side is not passed to the other (like a dead network
  path: connects succeed, reads time out).
* DROP_REPLIES -- bytes flow both ways until the upstream server begins a response: from the first
  byte of that response's HTTP/2 HEADERS frame on, nothing more is passed to the client and both
  sides of that connection are reset (RST). The server has handled the request -- a gRPC server
  sends a unary call's response headers only once its handler returned -- but the client never
  hears the answer: the "request landed, reply lost" fault an exactly-once create must survive.
  Deterministic: the cut is made on the frame that starts the answer, not on a timing guess.
  Other frames (SETTINGS and their ACKs, WINDOW_UPDATE, PING) pass: they are not answers. Only
  for plaintext HTTP/2 (gRPC without TLS); a connection that does not open with the HTTP/2
  preface is forwarded as in FORWARD.
* STALL     -- nothing is passed on in either direction, and nothing is lost: each side's bytes
  wait (unread, in the kernel's buffers, or kept in order by the proxy) until forward() passes
  them all on; connects succeed. A path that is slow for a while, not dead.

What a FORWARD proxy does when its upstream is down is the load balancer's character
(``upstream_down``): ``"close"`` (default) resets the client's connection, as HAProxy or envoy
do with no healthy backend; ``"hold"`` keeps it open and silent -- a client connection whose
upstream cannot be dialled, or whose upstream closed, swallows everything from then on.
Either way the proxy's own port always accepts, so a TCP connect says nothing about Temporal.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from stigmer.testing.ports import free_port

HOST = "127.0.0.1"
_CALL_TIMEOUT = 5.0


class ProxyMode(enum.Enum):
    FORWARD = "forward"  # pass bytes both ways
    REFUSE = "refuse"  # not listening; existing connections reset
    BLACKHOLE = "blackhole"  # accept, swallow everything, answer nothing
    DROP_REPLIES = "drop replies"  # pass requests, reset a connection where its server begins an answer
    STALL = "stall"  # pass nothing yet, lose nothing: forward() delivers it all


#: Modes in which bytes are passed on (in DROP_REPLIES, up to a response).
_PASSING = frozenset({ProxyMode.FORWARD, ProxyMode.DROP_REPLIES})
#: The connection preface an HTTP/2 client sends first (RFC 9113, section 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME_HEADER_BYTES = 9
HTTP2_DATA = 0x0
HTTP2_HEADERS = 0x1
HTTP2_SETTINGS = 0x4
HTTP2_END_STREAM = 0x1


@dataclass(frozen=True)
class Frame:
    """One HTTP/2 frame header seen in a chunk of bytes."""

    offset: int  # where its 9-byte header starts in the chunk (negative: in an earlier chunk)
    type: int
    flags: int
    stream: int


class Http2Frames:
    """Follows the frame boundaries of one direction of an HTTP/2 connection, chunk by chunk.

    ``client=True`` for the bytes a client sends (they open with the connection preface), else
    the server's (they open with a SETTINGS frame). Anything else turns it off for good
    (``http2`` False): the bytes are not HTTP/2, and no frame is reported from then on.
    """

    def __init__(self, *, client: bool) -> None:
        self.http2 = True
        self._preface_left = len(HTTP2_PREFACE) if client else 0
        self._first = True  # the next frame is the first one: it must be SETTINGS
        self._head = bytearray()
        self._payload_left = 0

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        i, n = 0, len(data)
        while i < n and self.http2:
            if self._preface_left:
                done = len(HTTP2_PREFACE) - self._preface_left
                take = min(self._preface_left, n - i)
                if data[i : i + take] != HTTP2_PREFACE[done : done + take]:
                    self.http2 = False
                    break
                self._preface_left -= take
                i += take
            elif self._payload_left:
                take = min(self._payload_left, n - i)
                self._payload_left -= take
                i += take
            else:
                start = i - len(self._head)
                take = min(_FRAME_HEADER_BYTES - len(self._head), n - i)
                self._head += data[i : i + take]
                i += take
                if len(self._head) < _FRAME_HEADER_BYTES:
                    break
                head, self._head = bytes(self._head), bytearray()
                frame = Frame(
                    offset=start,
                    type=head[3],
                    flags=head[4],
                    stream=int.from_bytes(head[5:9], "big") & 0x7FFFFFFF,
                )
                if self._first and frame.type != HTTP2_SETTINGS:
                    self.http2 = False
                    break
                self._first = False
                self._payload_left = int.from_bytes(head[0:3], "big")
                frames.append(frame)
        return frames


def _reset(transport: asyncio.Transport | None) -> None:
    """Close with RST rather than FIN: linger on, timeout 0, then an immediate close."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Side(asyncio.Protocol):
    """One end of a proxied connection; hands what it reads to the owning _Link."""

    def __init__(self, link: _Link, *, upstream: bool) -> None:
        self.link = link
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.frames = Http2Frames(client=not upstream)  # what it sends, frame by frame

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.upstream:
            self.link.proxy._on_client(self.link)

    def data_received(self, data: bytes) -> None:
        if not self.upstream and not self.link.spoke:
            self.link.spoke = True
            self.link.proxy.connections_with_data += 1
        self.link.on_data(self, data)

    def eof_received(self) -> bool | None:
        self.link.on_lost(self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.on_lost(self)

    # Back-pressure: when one side's write buffer fills, stop reading the other side.
    def pause_writing(self) -> None:
        self.link.set_reading(self.link.peer_of(self), paused=True)

    def resume_writing(self) -> None:
        self.link.set_reading(self.link.peer_of(self), paused=False)


class _Link:
    """A client connection and, once dialled, its upstream connection."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self, upstream=False)
        self.server = _Side(self, upstream=True)
        self.tainted = False  # lost data in a blackhole: may never forward again
        self.closed = False
        self.spoke = False  # the client sent something (a TCP liveness check sends nothing)
        #: What arrived during a stall, in order: (side, bytes), or (side, None) for its close.
        self.held: list[tuple[_Side, bytes | None]] = []

    def peer_of(self, side: _Side) -> _Side:
        return self.server if side is self.client else self.client

    def set_reading(self, side: _Side, *, paused: bool) -> None:
        transport = side.transport
        if transport is None or transport.is_closing():
            return
        mode = self.proxy.mode
        if mode is ProxyMode.STALL:
            transport.pause_reading()  # whatever is asked: a stall reads nothing until it ends
        elif paused and mode in _PASSING:
            transport.pause_reading()
        elif not paused:
            transport.resume_reading()

    def on_data(self, side: _Side, data: bytes) -> None:
        if self.proxy.mode is ProxyMode.STALL and not self.tainted:
            self.held.append((side, data))  # read just before the stall began: passed on after it
            return
        self.pass_on(side, data)

    def pass_on(self, side: _Side, data: bytes) -> None:
        peer = self.peer_of(side).transport
        mode = self.proxy.mode
        if mode not in _PASSING or self.tainted or peer is None:
            self.tainted = True
            return  # swallowed
        frames = side.frames.feed(data)
        if not side.upstream:
            self.proxy.requests_forwarded += sum(f.type == HTTP2_HEADERS and f.stream != 0 for f in frames)
        elif mode is ProxyMode.DROP_REPLIES:
            answer = next((f for f in frames if f.type == HTTP2_HEADERS and f.stream != 0), None)
            if answer is not None:
                # Frames before the answer pass (they are not part of it); the answer never does.
                cut = max(0, answer.offset)
                if cut:
                    peer.write(data[:cut])
                    self.proxy.bytes_forwarded += cut
                self.proxy.replies_dropped += 1
                self.reset()
                return
        peer.write(data)
        self.proxy.bytes_forwarded += len(data)

    def on_lost(self, side: _Side) -> None:
        if side.upstream and self.proxy.upstream_down == "hold" and not self.tainted:
            self.tainted = True  # the upstream went away: the client hears nothing of it
            return
        mode = self.proxy.mode
        if mode is ProxyMode.STALL and not self.tainted:
            self.held.append((side, None))  # the close is passed on after what came before it
            return
        if mode in _PASSING and not self.tainted:
            # A live path passes the close on; close() flushes what is still buffered.
            peer = self.peer_of(side).transport
            if peer is not None:
                peer.close()
            if side.transport is not None:
                side.transport.close()
            self.forget()
        # Otherwise the path is dead: the other side hears nothing until the mode changes.
        elif all(t is None or t.is_closing() for t in (self.client.transport, self.server.transport)):
            self.forget()

    def release(self) -> None:
        """A stall is over: pass on, in order, what it kept."""
        held, self.held = self.held, []
        for side, data in held:
            if self.closed:
                return
            if data is None:
                self.on_lost(side)
            else:
                self.pass_on(side, data)

    def reset(self) -> None:
        _reset(self.client.transport)
        _reset(self.server.transport)
        self.forget()

    def forget(self) -> None:
        self.closed = True
        self.proxy._links.discard(self)


class TcpProxy:
    """Listens on 127.0.0.1:<free port> and forwards to `target` ("host:port")."""

    def __init__(
        self, *, target: str, port: int | None = None, upstream_down: Literal["close", "hold"] = "close"
    ) -> None:
        if upstream_down not in ("close", "hold"):
            raise ValueError(f"upstream_down must be 'close' or 'hold', got {upstream_down!r}")
        self.upstream_down = upstream_down
        host, _, port_text = target.rpartition(":")
        self._target = (host, int(port_text))
        self._port = port if port is not None else free_port()
        self._mode = ProxyMode.FORWARD
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._dials: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones
        self.connections_accepted = 0
        #: Accepted connections whose client sent bytes: gRPC calls, not bare TCP connects.
        self.connections_with_data = 0
        self.bytes_forwarded = 0
        #: HTTP/2 HEADERS frames passed from clients to the server: with gRPC, one per call.
        self.requests_forwarded = 0
        #: Connections reset in DROP_REPLIES as their server began an answer (one per answer lost).
        self.replies_dropped = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def target(self) -> str:
        return f"{self._target[0]}:{self._target[1]}"

    @property
    def mode(self) -> ProxyMode:
        return self._mode

    @property
    def active_connections(self) -> int:
        return len(self._links)

    # -- thread plumbing ---------------------------------------------------------------------

    def start(self) -> TcpProxy:
        if self._loop is not None:
            raise RuntimeError("TcpProxy already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"TcpProxy-{self._port}", daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("TcpProxy is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(timeout=_CALL_TIMEOUT)

    def close(self) -> None:
        """Reset every connection, stop listening, stop the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_CALL_TIMEOUT)
            if not thread.is_alive():
                loop.close()
            self._thread = None

    # -- modes -------------------------------------------------------------------------------

    def forward(self) -> None:
        self._call(self._set_mode(ProxyMode.FORWARD))

    def refuse(self) -> None:
        self._call(self._set_mode(ProxyMode.REFUSE))

    def blackhole(self) -> None:
        self._call(self._set_mode(ProxyMode.BLACKHOLE))

    def drop_replies(self) -> None:
        """Requests pass; each answer a server begins resets its connection instead (see the module doc)."""
        self._call(self._set_mode(ProxyMode.DROP_REPLIES))

    def stall(self) -> None:
        """Pass nothing until forward() (or drop_replies()), which passes on everything kept, in order."""
        self._call(self._set_mode(ProxyMode.STALL))

    async def _set_mode(self, mode: ProxyMode) -> None:
        self._mode = mode
        if mode is ProxyMode.REFUSE:
            await self._unlisten()
            for link in list(self._links):
                link.reset()
            return
        if mode in _PASSING:
            for link in list(self._links):
                if link.tainted:
                    link.reset()
                    continue
                link.release()
                if not link.closed and link.server.transport is not None:  # else _dial resumes it
                    link.set_reading(link.client, paused=False)
                    link.set_reading(link.server, paused=False)
        elif mode is ProxyMode.STALL:
            for link in list(self._links):
                link.set_reading(link.client, paused=True)
                link.set_reading(link.server, paused=True)
        else:
            for link in list(self._links):
                # Keep draining both sides so a sender never sees back-pressure, only silence.
                link.held.clear()
                link.set_reading(link.client, paused=False)
                link.set_reading(link.server, paused=False)
                link.tainted = True
        await self._listen()

    # -- loop side ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        # reuse_address: re-listen on our port at once after refuse(), despite TIME_WAIT.
        self._server = await loop.create_server(
            self._accept, host=HOST, port=self._port, reuse_address=True, backlog=128
        )

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # closes the listening socket now; later connects get ECONNREFUSED

    def _accept(self) -> _Side:
        link = _Link(self)
        self._links.add(link)
        self.connections_accepted += 1
        return link.client

    def _on_client(self, link: _Link) -> None:
        if self._mode in _PASSING or self._mode is ProxyMode.STALL:
            # Hold client bytes until upstream is connected, so nothing is read and dropped.
            link.set_reading(link.client, paused=True)
            task = asyncio.get_running_loop().create_task(self._dial(link))
            self._dials.add(task)
            task.add_done_callback(self._dials.discard)
        else:
            link.tainted = True

    async def _dial(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: link.server, *self._target), timeout=_CALL_TIMEOUT)
        except (TimeoutError, OSError):
            if self.upstream_down == "hold":
                link.tainted = True  # accepted and silent for good
                link.set_reading(link.client, paused=False)  # drain: silence, never back-pressure
            else:
                link.reset()  # the client sees a reset, as with a dead server
            return
        if link.closed or link.tainted or self._mode not in _PASSING:
            if link.closed:
                _reset(link.server.transport)
            elif not link.tainted and self._mode is ProxyMode.STALL:
                link.set_reading(link.server, paused=True)  # connected; the stall's end resumes both
            return
        link.set_reading(link.client, paused=False)

    async def _shutdown(self) -> None:
        await self._unlisten()
        for task in list(self._dials):
            task.cancel()
        for link in list(self._links):
            link.reset()

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TcpProxy({self.address} -> {self.target}, {self._mode.value}, upstream down {self.upstream_down})"
