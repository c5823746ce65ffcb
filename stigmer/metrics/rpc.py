"""Request counts and latencies of the gRPC API: a grpc.aio server interceptor.

No maintained library fits: py-grpc-prometheus intercepts the synchronous server only (its
asyncio support is an open issue) and names its metrics its own way. This one wraps each method's
handler once (cached per method) and records, when a call ends:

- ``stigmer_grpc_requests_total{method,code}``: the status the call ended with -- the code a
  servicer set (stigmer.server.errors sets codes, not aborts) or aborted with (the token check),
  UNKNOWN for an exception that escaped, CANCELLED or DEADLINE_EXCEEDED for a call whose client went
  away or ran out of time; for a stream, the code it finally ended with;
- ``stigmer_grpc_request_duration_seconds{method}``: seconds from the handler's start to its end
  (for a stream: how long it was open).

``method`` is the full gRPC method (``stigmer.v1.AgentExecutionService/Create``), only ever one
the server registered: a call to an unknown method gets UNIMPLEMENTED from grpc without a handler
and is not counted, so no client can make up label values.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeAlias

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

#: From well under a millisecond (a read) to minutes (a Watch stream stays open).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Put it first among the server's interceptors: calls the token check refuses count too."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "stigmer_grpc_requests",
            "gRPC calls the server answered, by method and final status code.",
            ["method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "stigmer_grpc_request_duration_seconds",
            "Seconds each gRPC call took (for a stream: how long it was open), by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: grpc answers UNIMPLEMENTED; not a label value
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method.lstrip("/"), handler)
        # One entry per registered method (a refused call's stand-in handler replaces it for a while).
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Handler) -> Handler:
        observer = _Observer(self.requests, self.duration, method)
        kinds = {
            (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
            (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
            (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
            (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
        }
        attribute, make = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
        behavior = getattr(handler, attribute)
        if inspect.isasyncgenfunction(behavior):
            observed: Any = observer.stream(behavior)
        elif inspect.iscoroutinefunction(behavior):  # unary, or a stream written with context.write()
            observed = observer.call(behavior)
        else:
            return handler  # a synchronous behavior: none in this server
        return make(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _Observer:
    """One method's series and the two wrappers that feed them."""

    def __init__(self, requests: Counter, duration: Histogram, method: str) -> None:
        self._requests = requests
        self._method = method
        self._duration = duration.labels(method)
        self._codes: dict[grpc.StatusCode, Counter] = {}

    def call(self, behavior: Callable[[Any, Context], Awaitable[Any]]) -> Callable[[Any, Context], Awaitable[Any]]:
        async def observed(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            try:
                response = await behavior(request, context)
            except BaseException as err:
                self._record(started, _code_of(err, context))
                raise
            self._record(started, context.code() or grpc.StatusCode.OK)
            return response

        return observed

    def stream(self, behavior: Callable[[Any, Context], AsyncGenerator[Any]]) -> Callable[[Any, Context], Any]:
        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                # aclosing: a client that goes away finalizes the servicer's generator now.
                async with aclosing(behavior(request, context)) as items:
                    async for item in items:
                        yield item
            except BaseException as err:
                self._record(started, _code_of(err, context))
                raise
            self._record(started, context.code() or grpc.StatusCode.OK)

        return observed

    def _record(self, started: float, code: grpc.StatusCode) -> None:
        self._duration.observe(time.perf_counter() - started)
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = self._requests.labels(self._method, code.name)
        counter.inc()


def _code_of(err: BaseException, context: Context) -> grpc.StatusCode:
    """The status a call that raised ends with, as its client sees it."""
    if isinstance(err, asyncio.CancelledError | GeneratorExit):
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    if isinstance(err, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.UNKNOWN
