"""What the server and its clients agree on for authentication, and the client's half of it.

The server's half (the interceptor, TLS credentials) is ``stigmer.server.auth``. This module
stays light (stdlib + grpc) because every CLI command imports it.

Client settings come from the environment only, so that a token never has to be typed on a
command line (where ``ps`` and shell history would show it):

- ``STIGMER_AUTH_TOKEN``: sent as ``authorization: Bearer <token>`` on every call;
- ``STIGMER_TLS_CA``: PEM file of the CA (or the self-signed certificate) to trust; turns TLS on;
- ``STIGMER_TLS=1``: TLS with the system's trusted roots (a certificate from a public CA);
- ``STIGMER_TLS_SERVER_NAME``: the name to verify the certificate against, when it differs
  from the host in the address.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from stigmer.errors import ConfigError

AUTH_TOKEN_ENV = "STIGMER_AUTH_TOKEN"
TLS_CA_ENV = "STIGMER_TLS_CA"
TLS_ENV = "STIGMER_TLS"
TLS_SERVER_NAME_ENV = "STIGMER_TLS_SERVER_NAME"

#: gRPC metadata keys are lower case; the value is ``Bearer <token>`` (RFC 6750).
AUTHORIZATION_KEY = "authorization"
BEARER = "bearer"
#: Short tokens can be guessed; a refusal says how to make a good one.
MIN_TOKEN_LENGTH = 16
HOW_TO_MAKE_A_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Secret:
    """A string that never shows itself in ``repr``/``str``.

    loguru renders local variables in tracebacks (``diagnose``) and dataclasses print their
    fields; wrapping the token means neither can leak it. Read it with ``reveal()``.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def token_problem(token: str) -> str | None:
    """Why ``token`` is unusable, in words that never include the token itself; None if fine."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters; make one with {HOW_TO_MAKE_A_TOKEN}"
    if not all(33 <= ord(c) <= 126 for c in token):
        # It travels in an HTTP/2 header: printable ASCII, no spaces.
        return "must be printable ASCII without spaces"
    return None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1 and ``localhost``."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a reachable interface


class ClientSecurityError(ConfigError):
    """The client's security settings cannot be used; the message names the variable."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, kw_only=True)
class ClientSecurity:
    """How a client reaches the server: token, TLS, certificate name."""

    token: Secret | None = None
    tls: bool = False
    ca_file: Path | None = None
    server_name: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSecurity:
        env = os.environ if environ is None else environ
        token = env.get(AUTH_TOKEN_ENV, "").strip()
        ca = env.get(TLS_CA_ENV, "").strip()
        name = env.get(TLS_SERVER_NAME_ENV, "").strip()
        return cls(
            token=Secret(token) if token else None,
            tls=bool(ca) or _truthy(env.get(TLS_ENV)),
            ca_file=Path(ca).expanduser() if ca else None,
            server_name=name or None,
        )

    def channel(self, address: str, *, options: list[tuple[str, Any]]) -> grpc.Channel:
        """A channel to ``address`` that sends the token on every call and speaks TLS if asked."""
        credentials, options = self._credentials(options)
        if credentials is not None:
            channel = grpc.secure_channel(address, credentials, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        if self.token is None:
            return channel
        return grpc.intercept_channel(channel, BearerToken(self.token))

    def aio_channel(self, address: str, *, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        """The asyncio twin of :meth:`channel`; the token goes in each call's :meth:`metadata`."""
        credentials, options = self._credentials(options)
        if credentials is not None:
            return grpc.aio.secure_channel(address, credentials, options=options)
        return grpc.aio.insecure_channel(address, options=options)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries: ``authorization: Bearer <token>`` when there is a token."""
        return () if self.token is None else ((AUTHORIZATION_KEY, f"Bearer {self.token.reveal()}"),)

    def _credentials(
        self, options: list[tuple[str, Any]]
    ) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
        if not self.tls:
            return None, options
        root = None
        if self.ca_file is not None:
            try:
                root = self.ca_file.read_bytes()
            except OSError as err:
                raise ClientSecurityError(
                    f"{TLS_CA_ENV}={self.ca_file}: cannot read it ({err.strerror or err})"
                ) from err
        if self.server_name:
            options = [*options, ("grpc.ssl_target_name_override", self.server_name)]
        return grpc.ssl_channel_credentials(root_certificates=root), options


def tls_hint(details: str, *, tls: bool) -> str | None:
    """What to do when a connection failed over TLS, judged from grpc's error text; else None."""
    lowered = details.lower()
    if "handshake" in lowered or "certificate" in lowered or "ssl" in lowered:
        return (
            f"The TLS handshake failed: set {TLS_CA_ENV} to the CA (or self-signed certificate) that "
            f"issued the server's certificate, and {TLS_SERVER_NAME_ENV} if it names another host."
        )
    if not tls and "socket closed" in lowered:
        # What a plaintext client sees from a TLS-only server.
        return (
            f"The server closed the connection: if it speaks TLS, set {TLS_CA_ENV} (or {TLS_ENV}=1); "
            "otherwise check that a stigmer server listens there (`stigmer server start`)."
        )
    return None


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every unary and server-streaming call."""

    def __init__(self, token: Secret) -> None:
        self._header = (AUTHORIZATION_KEY, f"Bearer {token.reveal()}")

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def __repr__(self) -> str:
        return "BearerToken('***')"


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any
