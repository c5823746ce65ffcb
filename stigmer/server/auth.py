"""The server's half of authentication: the bearer-token interceptor and TLS credentials.

With a token configured, every RPC except grpc.health.v1 must carry ``authorization: Bearer
<token>``. Health stays open on purpose: load balancers and ``grpc_health_probe`` check it without
secrets, and it reveals only SERVING / NOT_SERVING.

A rejected call is answered before its request is parsed (the stand-in handler takes raw bytes),
so an unauthenticated client never reaches a servicer or the protobuf decoder. Neither the
expected nor the offered token is ever put in a message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from loguru import logger

from stigmer.config import Config
from stigmer.errors import ConfigError
from stigmer.security import AUTH_TOKEN_ENV, AUTHORIZATION_KEY, BEARER, Secret, is_loopback

HEALTH_PREFIX = "/grpc.health.v1.Health/"

MISSING = f"this server requires a token: set {AUTH_TOKEN_ENV} (sent as metadata 'authorization: Bearer <token>')"
NOT_BEARER = "the authorization metadata must be 'Bearer <token>'"
INVALID = f"invalid token (check {AUTH_TOKEN_ENV})"

#: One WARN line per window for rejected calls; the rest are counted into the next line.
REJECTION_LOG_WINDOW = 60.0


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests keeps compare_digest from revealing the token's length.
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class BearerTokenAuth(grpc.aio.ServerInterceptor):
    """Lets a call through only with the right bearer token (constant-time compare)."""

    def __init__(self, token: Secret, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._expected = _digest(token.reveal())
        self._rejections = _RejectionLog(clock=clock)

    def check(self, metadata: Sequence[Any] | None) -> str | None:
        """None when ``metadata`` carries the right token, else the reason to give the caller."""
        values = [value for key, value in (metadata or ()) if key == AUTHORIZATION_KEY]
        if not values:
            return MISSING
        value = values[0]
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, credential = value.strip().partition(" ")
        if scheme.lower() != BEARER or not credential.strip():
            return NOT_BEARER
        if not hmac.compare_digest(_digest(credential.strip()), self._expected):
            return INVALID
        return None

    # Any request and response types: the interceptor sits in front of every service, and a rejected
    # call gets a stand-in handler of its own (raw bytes in, nothing out).
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        if method.startswith(HEALTH_PREFIX):
            return await continuation(handler_call_details)
        problem = self.check(handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)
        if problem is None:
            return handler
        return self._reject(handler, method, problem)

    def _reject(
        self, handler: grpc.RpcMethodHandler[Any, Any] | None, method: str, problem: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        rejections = self._rejections

        async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            rejections.record(method=method, peer=context.peer(), reason=problem)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

        async def abort_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            await abort(request, context)
            yield  # pragma: no cover - abort() raises; this only makes the function a generator

        # Same shape as the real method, no deserializer: the request stays unparsed bytes.
        request_streaming = bool(handler and handler.request_streaming)
        if handler is not None and handler.response_streaming:
            if request_streaming:
                return grpc.stream_stream_rpc_method_handler(abort_stream)
            return grpc.unary_stream_rpc_method_handler(abort_stream)
        if request_streaming:
            return grpc.stream_unary_rpc_method_handler(abort)
        return grpc.unary_unary_rpc_method_handler(abort)


class _RejectionLog:
    """Logs rejected calls without flooding: the first at once, then one summary per window."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._window_start: float | None = None
        self._suppressed = 0

    def record(self, *, method: str, peer: str, reason: str) -> None:
        now = self._clock()
        if self._window_start is not None and now - self._window_start < REJECTION_LOG_WINDOW:
            self._suppressed += 1
            return
        extra = f" (and {self._suppressed} more in the last {REJECTION_LOG_WINDOW:g}s)" if self._suppressed else ""
        logger.warning("Rejected a call without a valid token" + extra, method=method, peer=peer, reason=reason)
        self._window_start, self._suppressed = now, 0


def server_credentials(*, cert: Path, key: Path) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; ConfigError (naming the flags) when they cannot be used."""
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"--tls-cert/--tls-key (STIGMER_TLS_CERT/STIGMER_TLS_KEY): cannot read {err.filename}: "
            f"{err.strerror or err}"
        ) from err
    # grpc only says "failed to bind" for a bad pair; the stdlib's loader says what is wrong.
    # The password callback stops OpenSSL from prompting on the terminal for an encrypted key.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, ValueError) as err:
        raise ConfigError(
            f"--tls-cert {cert} and --tls-key {key} are not a usable PEM certificate and unencrypted "
            f"private key that belong together ({getattr(err, 'reason', None) or err})"
        ) from err
    return grpc.ssl_server_credentials([(key_pem, cert_pem)])


@dataclass(frozen=True, kw_only=True)
class ListenerSecurity:
    """What ``build_server`` needs to guard the listener: the token check and TLS credentials."""

    interceptors: list[grpc.aio.ServerInterceptor] = field(default_factory=list)
    credentials: grpc.ServerCredentials | None = None

    @classmethod
    def from_config(cls, config: Config) -> ListenerSecurity:
        """Raises ConfigError (naming the flags) when the certificate or key cannot be used."""
        credentials = None
        if config.tls_cert is not None and config.tls_key is not None:
            credentials = server_credentials(cert=config.tls_cert, key=config.tls_key)
        interceptors: list[grpc.aio.ServerInterceptor] = (
            [BearerTokenAuth(config.auth_token)] if config.auth_token is not None else []
        )
        return cls(interceptors=interceptors, credentials=credentials)


def describe_protection(config: Config) -> str:
    """For the startup log: what guards the listener (never the token itself)."""
    parts = [
        name for name, on in (("token", config.auth_token is not None), ("TLS", config.tls_cert is not None)) if on
    ]
    return " + ".join(parts) or "none"


def startup_warnings(config: Config) -> list[str]:
    """Loud lines for risky but allowed setups; empty when the listener is safe."""
    host = config.address.rpartition(":")[0]
    if is_loopback(host):
        return []
    if config.auth_token is None and config.tls_cert is None:
        return [
            f"⚠️ INSECURE: listening on {config.address} with neither a token nor TLS (--insecure). "
            "Anyone who can reach this port can create executions and read every one of them. "
            f"Set {AUTH_TOKEN_ENV} and --tls-cert/--tls-key, or bind 127.0.0.1."
        ]
    if config.tls_cert is None:
        return [
            f"The token travels in clear text to {config.address}: anyone on the network path can read it. "
            "Add --tls-cert/--tls-key (clients then set STIGMER_TLS_CA)."
        ]
    return []
