"""Controller errors -> gRPC status codes, in one place, for every servicer method.

``@grpc_errors`` wraps unary methods (coroutines) and server-streaming methods (async
generators) alike. Expected errors become their status code with the controller's message;
anything else becomes INTERNAL with a fixed message, and its traceback goes to the server log
once -- never to the client, which could not act on it and should not see server internals.

A store that cannot write (disk full, read-only or broken data dir) is not a bug but a state of
the machine the operator must fix, and its message says how: RESOURCE_EXHAUSTED when the disk
is full (gRPC's code for "the file system is out of space"), FAILED_PRECONDITION otherwise. Not
UNAVAILABLE: clients read that as "Temporal is down, retry shortly", which would not help.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import grpc
from loguru import logger

from stigmer.contract import DATABASE_UNAVAILABLE, UNAVAILABLE_KIND_KEY
from stigmer.contract import RETRY_AFTER_KEY as RETRY_AFTER_KEY
from stigmer.contract import STATE_KEY as STATE_KEY
from stigmer.errors import (
    UNAVAILABLE_MESSAGE,
    AlreadyExistsError,
    DatabaseError,
    DatabaseUnavailableError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StigmerError,
    StoreFullError,
    TemporalUnavailableError,
)

INTERNAL_MESSAGE = "internal error (see server log)"

#: Most specific first (StoreFullError is a DatabaseError). A StigmerError missing here, or any
#: other exception, is a bug: INTERNAL.
CODES: tuple[tuple[type[StigmerError], grpc.StatusCode], ...] = (
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (TemporalUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (StoreFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DatabaseUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (DatabaseError, grpc.StatusCode.FAILED_PRECONDITION),
)


def retry_after_seconds(value: float) -> int:
    """Whole seconds, at least 1: clients retrying after "0" would hammer a server that just said no."""
    if not math.isfinite(value):
        return 1
    return max(1, math.ceil(value))


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """(code, details, trailing metadata) for an error raised by a controller."""
    if isinstance(error, TemporalUnavailableError):
        # Always the contract's message: what failed (the error's own text) is for the log.
        retry_after = str(retry_after_seconds(error.retry_after))
        metadata = ((STATE_KEY, error.state or "UNKNOWN"), (RETRY_AFTER_KEY, retry_after))
        return grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, metadata
    if isinstance(error, DatabaseUnavailableError):
        # The server answered: marked so that a client tells it from "could not reach the server".
        return (
            grpc.StatusCode.UNAVAILABLE,
            str(error),
            ((UNAVAILABLE_KIND_KEY, DATABASE_UNAVAILABLE), (RETRY_AFTER_KEY, "1")),
        )
    for kind, code in CODES:
        if isinstance(error, kind):
            return code, str(error), ()
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, ()


def finish_with(error: Exception, context: grpc.aio.ServicerContext[Any, Any], *, rpc: str) -> None:
    """Set the status for ``error`` on the call; the method then returns (unary: no response).

    Not ``context.abort()``: grpc keeps the AbortError it raises on the call's state, and that
    error's traceback holds the frames that hold the request -- a reference cycle that only the
    garbage collector frees, and it runs rarely in a quiet server. Measured with abort(): every
    refused 3 MiB request kept about 7 MiB of server memory (the request, the copies of its
    text) until the next collection. A status set this way is sent exactly the same, and grpc
    discards the response of a call whose code is not OK.
    """
    if isinstance(error, grpc.aio.AbortError):
        raise error  # the method aborted on purpose; its status is already set
    code, details, metadata = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        logger.opt(exception=error).error("Unhandled error in {}", rpc, rpc=rpc)
    elif isinstance(error, DatabaseUnavailableError):
        # The store logs the database's outage once; one line per refused request would flood.
        logger.debug("{} refused: database unavailable", rpc, rpc=rpc)
    elif isinstance(error, DatabaseError):
        logger.error("{} failed: {}", rpc, error, rpc=rpc)  # the operator has something to fix
    elif code is grpc.StatusCode.UNAVAILABLE:
        # The connection logs the outage itself; one line per refused request would flood.
        logger.debug("{} refused: Temporal unavailable", rpc, rpc=rpc, state=metadata[0][1])
    context.set_code(code)
    context.set_details(details)
    if metadata:
        context.set_trailing_metadata(metadata)


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a servicer method (``async def`` or async generator) to map errors to statuses."""
    rpc = method.__qualname__
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                # aclosing: when the client goes away the inner generator's cleanup (unsubscribing
                # from the store) must run now, not whenever the garbage collector gets to it.
                async with aclosing(method(self, request, context)) as items:
                    async for item in items:
                        yield item
            except Exception as error:
                finish_with(error, context, rpc=rpc)

        return stream

    if not inspect.iscoroutinefunction(method):
        raise TypeError(f"@grpc_errors needs an async def or async generator method, got {rpc}")

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except Exception as error:
            finish_with(error, context, rpc=rpc)
            return None

    return unary
