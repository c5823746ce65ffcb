"""Temporal's and grpc's errors mapped to ours, in one place: why a dial, check or call failed.

:func:`is_unavailable` tells an RPC error that means "no answer" (the creators and the
reconciler raise or retry on it) from a refusal.

The connection's dial and verify raise what this module builds: :class:`TemporalUnavailableError`
for an outage (retry on the normal backoff) and :class:`TemporalMisconfiguredError` for what no quick
retry can fix (statemachine.Misconfiguration: retried at the backoff cap, no fast attempts).

The SDK reports a failed ``Client.connect`` as a ``RuntimeError`` carrying the Rust client's
error text (there is no type or status to go by), so dial failures are recognised by the stable
names in that text (``UnknownIssuer``, ``InvalidContentType``, ``FRAME_SIZE_ERROR``); RPC
failures by their status code.
"""

from __future__ import annotations

import re

from temporalio.service import RPCError, RPCStatusCode

from statemachine import Misconfiguration, describe
from stigmer.errors import TemporalUnavailableError
from stigmer.temporal.wire import speaks_http1, speaks_tls, split_host_port


class AcceptedThenClosed(TemporalUnavailableError):
    """The address took the connection and then closed it: a load balancer with no Temporal behind
    it, usually -- or a TLS port spoken to in plaintext (:func:`speaks_tls` tells them apart)."""


class TemporalMisconfiguredError(TemporalUnavailableError, Misconfiguration):
    """Temporal (or something) answered, but this configuration cannot work; the message says what to fix."""


class NamespaceMissing(TemporalMisconfiguredError):
    def __init__(self, namespace: str, host_port: str = "this Temporal") -> None:
        super().__init__(
            f"namespace '{namespace}' does not exist on {host_port}: create it with "
            f"`temporal operator namespace create -n {namespace}` or set TEMPORAL_NAMESPACE"
        )


_REFUSED_CREDENTIALS = (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED)
#: How tonic prints those codes in the Rust client's error text.
_REFUSED_IN_TEXT = (("code: unauthenticated", "UNAUTHENTICATED"), ("code: permissiondenied", "PERMISSION_DENIED"))


def credentials_refused(host_port: str, status: str, message: str) -> TemporalMisconfiguredError:
    return TemporalMisconfiguredError(
        f"Temporal at {host_port} refused our credentials ({status}: {message}): "
        "check TEMPORAL_API_KEY or the client certificate (TEMPORAL_TLS_CERT/KEY)"
    )


#: Codes that mean "no answer from Temporal" rather than "Temporal refused the request". A
#: black-holed connection surfaces as CANCELLED 'Timeout expired', a call racing a connection
#: reset as CANCELLED 'operation was canceled' (measured through a TCP proxy): we never cancel an
#: RPC ourselves (a cancelled task raises CancelledError, not an RPCError), so CANCELLED counts.
_NO_ANSWER = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED})


def is_unavailable(exc: BaseException) -> bool:
    """True for the RPC errors that mean "Temporal is not reachable" rather than "request refused".

    By status code, with one exception the SDK leaves us: the Rust client reports its own
    transport failure (a reset mid-call, measured) as UNKNOWN with the text 'transport error',
    which a server-sent UNKNOWN does not carry.
    """
    if not isinstance(exc, RPCError):
        return False
    if exc.status in _NO_ANSWER:
        return True
    return exc.status == RPCStatusCode.UNKNOWN and "transport error" in exc.message.lower()


def diagnose(err: BaseException, host_port: str) -> TemporalUnavailableError:
    """The error to raise for ``err``: an outage, or a misconfiguration saying what to fix."""
    text = str(err)
    lowered = text.lower()
    if isinstance(err, RPCError) and err.status in _REFUSED_CREDENTIALS:
        return credentials_refused(host_port, err.status.name, err.message)
    # Client.connect's own first call (get_system_info) reports a refusal as text only.
    for marker, status in _REFUSED_IN_TEXT:
        if marker in lowered:
            found = re.search(r'message: "([^"]*)"', text)
            return credentials_refused(host_port, status, found.group(1) if found else "")
    for marker, fix in _MISCONFIGURED:
        if marker in lowered:
            return TemporalMisconfiguredError(fix.format(host_port=host_port))
    if isinstance(err, TimeoutError) or "timeout expired" in lowered or "deadline" in lowered:
        return TemporalUnavailableError(
            f"no answer from {host_port} in time (is the address right, or the network path dead?)"
        )
    if "connection refused" in lowered:
        return TemporalUnavailableError(f"connection refused by {host_port} (is Temporal running?)")
    if "connectionreset" in lowered or "broken pipe" in lowered or "connection reset" in lowered:
        return AcceptedThenClosed(
            f"{host_port} accepted the connection, then closed it (a load balancer with no Temporal behind it?)"
        )
    if "tcp connect error" in lowered or "dns error" in lowered or "failed to lookup" in lowered:
        return TemporalUnavailableError(f"cannot reach {host_port}: {text.splitlines()[0][:200]}")
    if isinstance(err, RPCError):
        return TemporalUnavailableError(f"{err.status.name if err.status else 'RPC error'}: {err.message}")
    return TemporalUnavailableError(describe(err))


_NOT_GRPC = (
    "{host_port} does not speak gRPC (an HTTP/1 or other server answered): is the port right? "
    "Temporal's frontend listens on 7233 by default"
)

#: Lower-cased markers of the Rust client's (rustls, hyper, h2) error text -> what to fix.
_MISCONFIGURED: tuple[tuple[str, str], ...] = (
    (
        "invalidcontenttype",
        "{host_port} does not speak TLS (a plaintext port?): turn TLS off (TEMPORAL_TLS=false, "
        "no TEMPORAL_TLS_* or TEMPORAL_API_KEY) or use Temporal's TLS address",
    ),
    (
        "unknownissuer",
        "Temporal's certificate at {host_port} is not signed by a CA we trust: set TEMPORAL_TLS_CA "
        "to the CA that signed it",
    ),
    (
        "notvalidforname",
        "Temporal's certificate at {host_port} does not name the host we asked for: set "
        "TEMPORAL_TLS_SERVER_NAME to a name it carries",
    ),
    ("frame_size_error", _NOT_GRPC),
    ("invalid http version", _NOT_GRPC),
)


def not_grpc(host_port: str) -> TemporalMisconfiguredError:
    return TemporalMisconfiguredError(_NOT_GRPC.format(host_port=host_port))


def plaintext_to_tls(host_port: str) -> TemporalMisconfiguredError:
    return TemporalMisconfiguredError(
        f"{host_port} speaks TLS but we connect in plaintext: set TEMPORAL_TLS=true (and TEMPORAL_TLS_CA if its "
        "certificate is not from a public CA)"
    )


async def diagnose_dial(err: BaseException, host_port: str, *, tls: bool) -> TemporalUnavailableError:
    """:func:`diagnose` for a failed dial, asking the address one more question when that is ambiguous.

    Accepted, then closed: a load balancer with nothing behind it -- or a TLS port we speak
    plaintext to, or an HTTP/1 server that reset before its 400 was read. A TLS handshake and an
    HTTP/1 request tell them apart (only on this failure, at the backoff's pace).
    """
    found = diagnose(err, host_port)
    if not isinstance(found, AcceptedThenClosed):
        return found
    host, port = split_host_port(host_port)
    if not tls and await speaks_tls(host, port):
        return plaintext_to_tls(host_port)
    if await speaks_http1(host, port):
        return not_grpc(host_port)
    return found
