"""The API's locked doors: bind policy, the bearer-token interceptor, TLS credentials, the client side.

The interceptor runs in a real grpc.aio server on 127.0.0.1 with small generic handlers (one
unary, one server-streaming, plus grpc.health.v1), so every check goes over the wire exactly as
a client's call would. The whole server stack as a process is in tests/e2e/test_security.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from loguru import logger

import stigmer.server.auth as auth
from stigmer.config import Config
from stigmer.errors import ConfigError
from stigmer.security import ClientSecurity, ClientSecurityError, Secret, is_loopback, tls_hint, token_problem
from stigmer.server.auth import (
    INVALID,
    MISSING,
    NOT_BEARER,
    REJECTION_LOG_WINDOW,
    BearerTokenAuth,
    ListenerSecurity,
    describe_protection,
    server_credentials,
    startup_warnings,
)
from tests.support.certs import Certs, make_certs

TOKEN = "s3cr3t-token-for-tests-0123456789"
UNARY = "/test.Echo/Say"
STREAM = "/test.Echo/Stream"
WRONG = "wrong-token-but-long-enough-000"

# ------------------------------------------------------------------------------ bind policy


@pytest.mark.parametrize("address", ["127.0.0.1:7234", "127.0.0.2:7234", "localhost:7234", "[::1]:7234"])
def test_loopback_addresses_need_nothing(address: str) -> None:
    assert Config(address=address).address == address


@pytest.mark.parametrize("address", ["0.0.0.0:7234", "192.168.1.20:7234", "[::]:7234", "stigmer.example:7234"])
def test_other_addresses_are_refused_without_token_or_tls(address: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Config(address=address)
    message = str(refused.value)
    assert f"refusing to listen on {address}" in message
    for named in ("STIGMER_AUTH_TOKEN", "--auth-token", "--tls-cert/--tls-key", "--insecure", "127.0.0.1"):
        assert named in message, message


@pytest.mark.parametrize(
    "protection",
    [
        {"auth_token": Secret(TOKEN)},
        {"tls_cert": Path("cert.pem"), "tls_key": Path("key.pem")},
        {"insecure": True},
    ],
)
def test_a_token_tls_or_insecure_opens_other_addresses(protection: dict[str, Any]) -> None:
    assert Config(address="0.0.0.0:7234", **protection).address == "0.0.0.0:7234"


def test_loopback_detection() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.evil.com"]))


@pytest.mark.parametrize(
    "token", ["Zq9x-tiny", "has a space in it 123", "non-ascii-é-0123456789", "tab\tinside-0123456789"]
)
def test_bad_tokens_are_refused_without_showing_them(token: str) -> None:
    assert token_problem(token) is not None
    with pytest.raises(ConfigError) as refused:
        Config(auth_token=Secret(token))
    assert token not in str(refused.value) and "STIGMER_AUTH_TOKEN" in str(refused.value)


def test_cert_and_key_go_together() -> None:
    with pytest.raises(ConfigError, match=r"--tls-cert and --tls-key .* give both or neither"):
        Config(tls_cert=Path("cert.pem"))
    with pytest.raises(ConfigError, match="give both or neither"):
        Config(tls_key=Path("key.pem"))


def test_token_from_env_never_shows_in_the_config() -> None:
    config = Config.from_env({"STIGMER_AUTH_TOKEN": f"  {TOKEN}\n", "STIGMER_SERVER_ADDRESS": "0.0.0.0:7234"})
    assert config.auth_token is not None and config.auth_token.reveal() == TOKEN
    assert TOKEN not in repr(config) and TOKEN not in str(config) and TOKEN not in f"{config.auth_token}"


def test_flags_win_over_env_for_the_listener_settings(tmp_path: Path) -> None:
    config = Config.from_env(
        {"STIGMER_AUTH_TOKEN": "from-env-0123456789abcdef", "STIGMER_TLS_CERT": "~/c.pem", "STIGMER_TLS_KEY": "k.pem"},
        auth_token=TOKEN,
        tls_cert=str(tmp_path / "flag.pem"),
        insecure=False,
    )
    assert config.auth_token == Secret(TOKEN)
    assert config.tls_cert == tmp_path / "flag.pem" and config.tls_key == Path("k.pem")


def test_startup_warnings_are_loud_for_insecure_and_clear_text_tokens() -> None:
    assert startup_warnings(Config()) == []
    [insecure] = startup_warnings(Config(address="0.0.0.0:7234", insecure=True))
    assert insecure.startswith("⚠️ INSECURE") and "0.0.0.0:7234" in insecure
    [clear] = startup_warnings(Config(address="0.0.0.0:7234", auth_token=Secret(TOKEN)))
    assert "clear text" in clear and TOKEN not in clear
    tls = Config(address="0.0.0.0:7234", tls_cert=Path("c"), tls_key=Path("k"), auth_token=Secret(TOKEN))
    assert startup_warnings(tls) == []
    assert describe_protection(tls) == "token + TLS" and describe_protection(Config()) == "none"


# ------------------------------------------------------------------------------ a real server


class Servicer:
    """Counts the calls that got through: a rejected call must never reach it."""

    def __init__(self) -> None:
        self.calls = 0

    async def say(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        return b"hello " + request

    async def stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        self.calls += 1
        for part in (b"a", b"b"):
            yield part


async def serve(
    interceptors: list[Any], credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, str, Servicer]:
    servicer = Servicer()
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Say": grpc.unary_unary_rpc_method_handler(servicer.say),
                    "Stream": grpc.unary_stream_rpc_method_handler(servicer.stream),
                },
            )
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    address = "127.0.0.1:0"
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    await server.start()
    return server, f"127.0.0.1:{port}", servicer


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[str, Servicer]]:
    server, address, servicer = await serve([BearerTokenAuth(Secret(TOKEN))])
    try:
        yield address, servicer
    finally:
        await server.stop(grace=None)


async def call(address: str, method: str, metadata: list[tuple[str, str]] | None = None) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        if method == STREAM:
            stream = channel.unary_stream(method)(b"x", metadata=metadata, timeout=5)
            return [part async for part in stream]
        return await channel.unary_unary(method)(b"x", metadata=metadata, timeout=5)


async def rejected(address: str, method: str, metadata: list[tuple[str, str]] | None = None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(address, method, metadata)
    return error.value


@pytest.mark.parametrize("method", [UNARY, STREAM])
@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (None, MISSING),
        ([("authorization", f"Bearer {WRONG}")], INVALID),
        ([("authorization", f"Bearer {TOKEN}x")], INVALID),
        ([("authorization", f"Bearer {TOKEN[:-1]}")], INVALID),
        ([("authorization", f"Basic {TOKEN}")], NOT_BEARER),
        ([("authorization", TOKEN)], NOT_BEARER),
        ([("authorization", "Bearer ")], NOT_BEARER),
        ([("x-token", TOKEN)], MISSING),
    ],
)
async def test_calls_without_the_right_token_are_unauthenticated(
    guarded: tuple[str, Servicer], method: str, metadata: list[tuple[str, str]] | None, message: str
) -> None:
    address, servicer = guarded
    error = await rejected(address, method, metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == message
    assert TOKEN not in (error.details() or "") and WRONG not in (error.details() or "")
    assert servicer.calls == 0


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_right_token_passes_on_unary_and_streaming_calls(guarded: tuple[str, Servicer], scheme: str) -> None:
    address, servicer = guarded
    metadata = [("authorization", f"{scheme} {TOKEN}")]
    assert await call(address, UNARY, metadata) == b"hello x"
    assert await call(address, STREAM, metadata) == [b"a", b"b"]
    assert servicer.calls == 2


async def test_health_needs_no_token(guarded: tuple[str, Servicer]) -> None:
    address, _ = guarded
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_unknown_methods_do_not_reveal_themselves_without_a_token(guarded: tuple[str, Servicer]) -> None:
    address, _ = guarded
    assert (await rejected(address, "/test.Echo/Nope")).code() == grpc.StatusCode.UNAUTHENTICATED
    with_token = await rejected(address, "/test.Echo/Nope", [("authorization", f"Bearer {TOKEN}")])
    assert with_token.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_compare_is_constant_time(guarded: tuple[str, Servicer], monkeypatch: pytest.MonkeyPatch) -> None:
    address, _ = guarded
    seen: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    await rejected(address, UNARY, [("authorization", f"Bearer {WRONG}")])
    await call(address, UNARY, [("authorization", f"Bearer {TOKEN}")])
    # Digests of equal length whatever the offered token: the length does not leak either.
    assert len(seen) == 2 and all(len(a) == len(b) == 32 for a, b in seen)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG", format="{level} {message} {extra}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def test_rejections_are_logged_once_per_window_without_the_token(log_lines: list[str]) -> None:
    now = [100.0]
    interceptor = BearerTokenAuth(Secret(TOKEN), clock=lambda: now[0])
    record = interceptor._rejections.record
    for _ in range(50):
        record(method=UNARY, peer="ipv4:127.0.0.1:1", reason=INVALID)
    assert len(log_lines) == 1 and log_lines[0].startswith("WARNING Rejected a call without a valid token")
    now[0] += REJECTION_LOG_WINDOW + 1
    record(method=UNARY, peer="ipv4:127.0.0.1:1", reason=MISSING)
    assert len(log_lines) == 2 and "(and 49 more in the last 60s)" in log_lines[1]
    assert not any(TOKEN in line for line in log_lines)


async def test_rejected_calls_log_method_and_peer(guarded: tuple[str, Servicer], log_lines: list[str]) -> None:
    address, _ = guarded
    await rejected(address, UNARY, [("authorization", f"Bearer {WRONG}")])
    [line] = [line for line in log_lines if "Rejected" in line]
    assert UNARY in line and "127.0.0.1" in line and WRONG not in line and TOKEN not in line


# ------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_server_credentials_from_a_good_pair(certs: Certs) -> None:
    assert isinstance(server_credentials(cert=certs.server_cert, key=certs.server_key), grpc.ServerCredentials)


def test_server_credentials_name_the_flags_when_unusable(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--tls-cert/--tls-key .*cannot read .*missing\.pem"):
        server_credentials(cert=tmp_path / "missing.pem", key=certs.server_key)
    with pytest.raises(ConfigError, match="not a usable PEM certificate"):
        server_credentials(cert=certs.server_cert, key=certs.client_key)  # a key of another certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a usable PEM certificate"):
        server_credentials(cert=garbage, key=garbage)


def test_listener_security_from_config(certs: Certs) -> None:
    plain = ListenerSecurity.from_config(Config())
    assert plain.interceptors == [] and plain.credentials is None
    both = ListenerSecurity.from_config(
        Config(auth_token=Secret(TOKEN), tls_cert=certs.server_cert, tls_key=certs.server_key)
    )
    assert isinstance(both.interceptors[0], BearerTokenAuth) and both.credentials is not None


@pytest.fixture
async def tls_server(certs: Certs) -> AsyncIterator[str]:
    credentials = server_credentials(cert=certs.server_cert, key=certs.server_key)
    server, address, _ = await serve([BearerTokenAuth(Secret(TOKEN))], credentials)
    try:
        yield address
    finally:
        await server.stop(grace=None)


def blocking_call(security: ClientSecurity, address: str) -> bytes:
    """What the CLI does: a sync channel from ClientSecurity (run in a thread: the server is on this loop)."""
    channel = security.channel(address, options=[])
    try:
        return channel.unary_unary(UNARY)(b"x", timeout=5)  # type: ignore[no-any-return]
    finally:
        channel.close()


async def test_the_client_speaks_tls_and_sends_the_token(tls_server: str, certs: Certs) -> None:
    security = ClientSecurity.from_env({"STIGMER_AUTH_TOKEN": TOKEN, "STIGMER_TLS_CA": str(certs.ca)})
    assert await asyncio.to_thread(blocking_call, security, tls_server) == b"hello x"
    by_name = ClientSecurity.from_env(
        {"STIGMER_AUTH_TOKEN": TOKEN, "STIGMER_TLS_CA": str(certs.ca), "STIGMER_TLS_SERVER_NAME": "localhost"}
    )
    assert await asyncio.to_thread(blocking_call, by_name, tls_server) == b"hello x"


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"STIGMER_AUTH_TOKEN": TOKEN}, grpc.StatusCode.UNAVAILABLE),  # plaintext to a TLS server
        ({"STIGMER_AUTH_TOKEN": TOKEN, "STIGMER_TLS_CA": "OTHER"}, grpc.StatusCode.UNAVAILABLE),  # untrusted
        ({"STIGMER_TLS_CA": "CA"}, grpc.StatusCode.UNAUTHENTICATED),  # TLS fine, no token
    ],
)
async def test_the_client_fails_without_the_right_ca_or_token(
    tls_server: str, certs: Certs, env: dict[str, str], code: grpc.StatusCode
) -> None:
    env = {k: {"OTHER": str(certs.other_ca), "CA": str(certs.ca)}.get(v, v) for k, v in env.items()}
    with pytest.raises(grpc.RpcError) as error:
        await asyncio.to_thread(blocking_call, ClientSecurity.from_env(env), tls_server)
    assert error.value.code() == code  # type: ignore[attr-defined]


def test_client_security_from_env(tmp_path: Path) -> None:
    assert ClientSecurity.from_env({}) == ClientSecurity()
    assert ClientSecurity.from_env({"STIGMER_TLS": "1"}).tls
    assert not ClientSecurity.from_env({"STIGMER_TLS": "0"}).tls
    with_ca = ClientSecurity.from_env({"STIGMER_TLS_CA": "~/ca.pem", "STIGMER_AUTH_TOKEN": TOKEN})
    assert with_ca.tls and with_ca.ca_file == Path("~/ca.pem").expanduser()
    assert TOKEN not in repr(with_ca)
    with pytest.raises(ClientSecurityError, match=r"STIGMER_TLS_CA=.*nope\.pem: cannot read it"):
        ClientSecurity(tls=True, ca_file=tmp_path / "nope.pem").channel("127.0.0.1:1", options=[])


def test_tls_hints() -> None:
    assert "STIGMER_TLS_CA" in (
        tls_hint("Tls handshake failed (TSI_PROTOCOL_FAILURE): CERTIFICATE_VERIFY_FAILED", tls=True) or ""
    )
    assert "if it speaks TLS" in (tls_hint("ipv4:127.0.0.1:1: Socket closed", tls=False) or "")
    assert tls_hint("Connection refused", tls=False) is None
