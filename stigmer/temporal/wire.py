"""Questions asked below gRPC, on a bare connection: what speaks at an address, and does it answer?

Cheap (a connect and a few bytes, no grpc channel) and never the last word: ``replies_to_hello``
is the comeback probe's filter in front of its health RPC, ``speaks_tls`` and ``speaks_http1``
tell apart dials that were accepted and then closed (stigmer.temporal.connection._diagnose).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl

#: What an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame.
H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class Refused(ConnectionRefusedError):
    """Nothing listens there (a bare port whose server is down)."""


async def replies_to_hello(
    host: str,
    port: int,
    *,
    tls: bool,
    server_name: str | None = None,
    timeout: float = 1.0,  # noqa: ASYNC109 -- a bound on the whole exchange
) -> bool:
    """Does whatever accepts at ``host:port`` say anything back to a client's first flight?

    Plaintext: the HTTP/2 preface (a gRPC server answers with its SETTINGS at once); TLS: a
    ClientHello (any server answers with its ServerHello). A load balancer with nothing behind
    it closes (False) or holds the connection silent (False after ``timeout``). True proves
    only that something speaks -- an HTTP/2 load balancer answers by itself -- so the comeback
    probe asks its health RPC next; False costs no grpc channel (a fresh one costs ~2.5 ms of
    CPU, measured). Raises :class:`Refused` when the port refuses connections.
    """
    hello = _client_hello(host, server_name) if tls else H2_HELLO
    return bool(await _first_reply(host, port, hello, 1, timeout))


async def _first_reply(host: str, port: int, data: bytes, size: int, timeout: float) -> bytes:  # noqa: ASYNC109
    """Connect, send ``data``, return up to ``size`` bytes of reply: b"" if the peer closed, held
    its silence for ``timeout`` or failed. Raises :class:`Refused` when the port refuses."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=timeout)
    except ConnectionRefusedError as err:
        raise Refused(str(err)) from err
    except (OSError, TimeoutError):
        return b""
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(size), timeout=timeout)
    except (OSError, TimeoutError):
        return b""
    finally:
        writer.transport.abort()  # nothing to say goodbye to; no FIN handshake to wait for


def _unverified_context() -> ssl.SSLContext:
    """For "is it TLS?" questions only: the certificate is not what is asked about."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _client_hello(host: str, server_name: str | None) -> bytes:
    """A real ClientHello (ALPN h2, SNI as the client would send it), from a memory BIO."""
    context = _unverified_context()
    context.set_alpn_protocols(["h2"])
    name = server_name or (None if is_ip(host) else host)
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def split_host_port(host_port: str) -> tuple[str, int]:
    """``"h:7233"`` -> ``("h", 7233)``; ``"[::1]:7233"`` -> ``("::1", 7233)``."""
    host, _, port = host_port.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def accepts(host: str, port: int, *, timeout: float = 0.5) -> bool:  # noqa: ASYNC109
    """Does ``host:port`` accept TCP connections? (Cheap: no gRPC, no log noise; a hint only.)"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=timeout)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout=timeout)
    return True


async def speaks_tls(host: str, port: int, *, timeout: float = 1.0) -> bool:  # noqa: ASYNC109
    """Does ``host:port`` complete a TLS handshake? (Certificate not checked: only "is it TLS?")

    Asked when a plaintext dial was accepted and then closed: a load balancer with nothing
    behind it and a TLS port spoken to in plaintext look the same from the dial alone.
    """
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=_unverified_context()), timeout=timeout
        )
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), timeout=timeout)
    return True


async def speaks_http1(host: str, port: int, *, timeout: float = 1.0) -> bool:  # noqa: ASYNC109
    """Does ``host:port`` answer a plain HTTP/1.1 request? (A gRPC server speaks HTTP/2 only.)

    Asked, like :func:`speaks_tls`, when a dial was accepted and then closed: an HTTP/1 server
    sent the HTTP/2 preface sometimes answers with a 400 the client reads, sometimes resets
    before it can -- this question has one answer.
    """
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    try:
        head = await _first_reply(host, port, request, 9, timeout)
    except Refused:
        return False
    return head.startswith(b"HTTP/1.")
