"""gRPC errors from the server -> stigmer.errors, by status code and the server's own metadata."""

from __future__ import annotations

import grpc

from stigmer.contract import DATABASE_UNAVAILABLE, RETRY_AFTER_KEY, STATE_KEY, UNAVAILABLE_KIND_KEY, UNAVAILABLE_MESSAGE
from stigmer.errors import (
    AlreadyExistsError,
    DatabaseUnavailableError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServerUnreachableError,
    StigmerError,
    TemporalUnavailableError,
    UnauthenticatedError,
)
from stigmer.security import tls_hint


def trailing(error: grpc.aio.AioRpcError | grpc.RpcError) -> dict[str, str]:
    """The call's trailing metadata as text (our keys are text; '-bin' keys are skipped)."""
    found: dict[str, str] = {}
    for item in getattr(error, "trailing_metadata", lambda: ())() or ():
        key, value = item  # grpc's metadatum is a (key, value) tuple at run time
        if isinstance(value, str):
            found[key] = value
    return found


def is_ours(code: grpc.StatusCode, details: str, metadata: dict[str, str]) -> bool:
    """An UNAVAILABLE the stigmer server sent (Temporal is down), not grpc failing to reach it."""
    return code == grpc.StatusCode.UNAVAILABLE and (STATE_KEY in metadata or details == UNAVAILABLE_MESSAGE)


def from_rpc(error: grpc.RpcError, *, address: str, tls: bool) -> StigmerError:
    """The typed error for a failed call; its ``code`` attribute keeps the gRPC code's name."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    metadata = trailing(error)
    mapped = _map(code, details, metadata, address=address, tls=tls)
    mapped.code, mapped.details, mapped.trailing = code.name, details, metadata
    return mapped


def _map(code: grpc.StatusCode, details: str, metadata: dict[str, str], *, address: str, tls: bool) -> StigmerError:
    if is_ours(code, details, metadata):
        retry_after = float(metadata.get(RETRY_AFTER_KEY, "1") or 1)
        return TemporalUnavailableError(details or UNAVAILABLE_MESSAGE, state=metadata.get(STATE_KEY, ""),
                                        retry_after=retry_after)  # fmt: skip
    if code == grpc.StatusCode.UNAVAILABLE and metadata.get(UNAVAILABLE_KIND_KEY) == DATABASE_UNAVAILABLE:
        return DatabaseUnavailableError(details)  # the server answered: its database did not
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = tls_hint(details, tls=tls) or "is it running (`stigmer server start`), and is the address right?"
        return ServerUnreachableError(
            f"cannot reach the stigmer server at {address} ({details or 'no answer'}): {hint}", address=address
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServerUnreachableError(f"the stigmer server at {address} did not answer in time", address=address)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError("", "", message=details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, reason = details.partition(": ")
        return InvalidArgumentError(field, reason) if reason else InvalidArgumentError("request", details)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExistsError(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPreconditionError(details)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return UnauthenticatedError(f"the stigmer server at {address} refused our credentials: {details}")
    return StigmerError(f"{code.name}: {details}" if details else code.name)
