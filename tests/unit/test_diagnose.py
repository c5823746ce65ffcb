"""Failed dials and checks, mapped to what to fix. The error texts are the SDK's own, as seen
against a real dev server, a TLS proxy and Temporal's HTTP port (see tests/integration/test_misconfiguration.py)."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.service import RPCError, RPCStatusCode

from statemachine import Misconfiguration
from stigmer.temporal.diagnose import NamespaceMissing, TemporalMisconfiguredError, diagnose
from stigmer.temporal.wire import speaks_http1

H = "h:7233"
TLS_TO_PLAINTEXT = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    "ConnectError(Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }))"
)
UNKNOWN_CA = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError("
    "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))"
)
WRONG_NAME = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError(Custom "
    '{ kind: InvalidData, error: InvalidCertificate(NotValidForNameContext { expected: DnsName("x"), '
    'presented: ["DnsName(\\"localhost\\")"] }) }))'
)
HTTP_PORT = (
    "Failed client connect: `get_system_info` call error after connection: Status { code: Internal, message: "
    '"h2 protocol error: http2 error", source: Some(tonic::transport::Error(Transport, hyper::Error(Http2, '
    'Error { kind: GoAway(b"", FRAME_SIZE_ERROR, Library) }))) }'
)
RESET = (
    "Failed client connect: `get_system_info` call error after connection: Status { code: Unknown, message: "
    '"transport error", source: Some(tonic::transport::Error(Transport, hyper::Error(Io, '
    "Kind(ConnectionReset)))) }"
)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (RuntimeError(TLS_TO_PLAINTEXT), "h:7233 does not speak TLS (a plaintext port?): turn TLS off"),
        (RuntimeError(UNKNOWN_CA), "not signed by a CA we trust: set TEMPORAL_TLS_CA"),
        (RuntimeError(WRONG_NAME), "does not name the host we asked for: set TEMPORAL_TLS_SERVER_NAME"),
        (RuntimeError(HTTP_PORT), "h:7233 does not speak gRPC"),
        (RPCError("bad key", RPCStatusCode.UNAUTHENTICATED, b""), "refused our credentials (UNAUTHENTICATED: bad key)"),
        (RPCError("no", RPCStatusCode.PERMISSION_DENIED, b""), "check TEMPORAL_API_KEY or the client certificate"),
    ],
)
def test_misconfigurations_say_what_to_fix_and_retry_at_the_cap(error: BaseException, says: str) -> None:
    found = diagnose(error, H)
    assert isinstance(found, TemporalMisconfiguredError) and isinstance(found, Misconfiguration)
    assert says in str(found)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (RuntimeError(RESET), "h:7233 accepted the connection, then closed it (a load balancer with no Temporal"),
        (TimeoutError(), "no answer from h:7233 in time"),
        (RPCError("down", RPCStatusCode.UNAVAILABLE, b""), "UNAVAILABLE: down"),
    ],
)
def test_outages_stay_outages(error: BaseException, says: str) -> None:
    found = diagnose(error, H)
    assert not isinstance(found, Misconfiguration)
    assert str(found).startswith(says)


def test_a_missing_namespace_is_a_misconfiguration_naming_the_fix() -> None:
    err = NamespaceMissing("prod", "temporal.prod:7233")
    assert isinstance(err, Misconfiguration)
    assert str(err) == (
        "namespace 'prod' does not exist on temporal.prod:7233: create it with "
        "`temporal operator namespace create -n prod` or set TEMPORAL_NAMESPACE"
    )


async def _serving(reply: bytes | None) -> tuple[asyncio.Server, int]:
    """A loopback server that answers ``reply`` to the first bytes it reads, or resets (None)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        if reply is None:
            writer.transport.abort()
            return
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "http1"),
    [
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", True),
        (None, False),  # a load balancer with nothing behind it: accepts, then resets
        (b"\x00\x00\x12\x04\x00\x00\x00\x00\x00", False),  # an HTTP/2 server's SETTINGS frame
    ],
    ids=["http1-server", "resets", "http2-server"],
)
async def test_speaks_http1_tells_an_http1_server_from_a_closing_balancer(reply: bytes | None, http1: bool) -> None:
    server, port = await _serving(reply)
    async with server:
        assert await speaks_http1("127.0.0.1", port, timeout=2.0) is http1
    assert await speaks_http1("127.0.0.1", port, timeout=2.0) is False  # closed now: refused


def test_a_key_refused_by_client_connect_itself_reads_as_credentials() -> None:
    # Seen through tests/support/key_gateway.py: the dial's get_system_info, as RuntimeError text.
    error = RuntimeError(
        "Failed client connect: `get_system_info` call error after connection: Status { code: "
        'Unauthenticated, message: "invalid API key", metadata: MetadataMap { headers: '
        '{"content-type": "application/grpc"} }, source: None }'
    )
    found = diagnose(error, H)
    assert isinstance(found, Misconfiguration)
    assert str(found).startswith(
        f"Temporal at {H} refused our credentials (UNAUTHENTICATED: invalid API key): check TEMPORAL_API_KEY"
    )
