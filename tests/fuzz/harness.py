"""The real gRPC stack on an event loop of its own, so that (synchronous) Hypothesis tests can fire
thousands of calls at one server without a loop per example.

Server, controllers, store, Temporal connection and the grpc.aio client channel all live on one
loop in one thread; every call is scheduled there with `run_coroutine_threadsafe` and waited for
with a timeout. One stack per fuzz module keeps the run short: building it means connecting to
Temporal and starting three workers.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, seed, settings

from stigmer.contract import UNAVAILABLE_MESSAGE
from stigmer.testing.eventually import wait_until
from tests.integration.connection_rig import fast_settings
from tests.integration.test_servicers import Stack, serving

T = TypeVar("T")

CALL = 15.0  # seconds for one unary call (a Create may wait for Temporal up to 10 s)
STREAM = 30.0  # seconds for a whole Watch stream

#: The only codes a request may end with: the caller's mistake, or Temporal down. Never
#: INTERNAL or UNKNOWN (a bug), never a dropped connection (a crash).
EXPECTED_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAVAILABLE,
})  # fmt: skip
#: Error details are for people: short, and never a traceback or the echo of a huge input.
MAX_DETAILS = 1000
SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))
SEED = int(os.environ.get("FUZZ_SEED", "0"))
#: A busy machine may make a validation or health check time out now and then (see Api.via_temporal).
MAX_UNAVAILABLE = 3


@dataclass(frozen=True)
class Outcome:
    """What one call ended with: a reply (or the items of a stream), or a gRPC error."""

    reply: Any = None
    items: tuple[Any, ...] = ()
    error: grpc.aio.AioRpcError | None = None

    @property
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK if self.error is None else self.error.code()

    @property
    def details(self) -> str:
        return "" if self.error is None else (self.error.details() or "")

    def expect(self, *codes: grpc.StatusCode) -> Outcome:
        """Assert the call ended OK or with one of ``codes`` (all expected codes if none given),
        with a short, traceback-free message; return self for chaining."""
        allowed = set(codes or EXPECTED_CODES) | {grpc.StatusCode.OK}
        assert self.code in allowed, f"{self.code.name}: {self.details[:300]!r}"
        assert "Traceback" not in self.details and len(self.details) <= MAX_DETAILS, self.details[:300]
        return self

    def ok(self) -> Outcome:
        assert self.error is None, f"{self.code.name}: {self.details[:300]!r}"
        return self


class LoopThread:
    """An asyncio loop running in a daemon thread; `run` blocks the caller until a coroutine ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class Api:
    """Calls into a served `Stack` from synchronous code. Use as a context manager."""

    def __init__(self, *, temporal_address: str, data_dir: Path) -> None:
        # Slow health checks: two cores busy with fuzzing must not look like a Temporal outage.
        self._settings = replace(fast_settings(temporal_address), health_interval=5.0, health_timeout=5.0)
        self._data_dir = data_dir
        self._loop: LoopThread | None = None
        self._serving: AbstractAsyncContextManager[Stack] | None = None
        self._stack: Stack | None = None
        #: UNAVAILABLE answers seen by `via_temporal` (each was retried once connected again).
        self.unavailable_answers = 0

    def __enter__(self) -> Api:
        self._loop = LoopThread()
        try:
            self._serving = serving(self._settings, self._data_dir)
            self._stack = self._loop.run(self._serving.__aenter__(), timeout=60)
            self._loop.run(self.stack.connected(timeout=30), timeout=40)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        loop, serving_, self._loop, self._serving = self._loop, self._serving, None, None
        try:
            if loop is not None and serving_ is not None and self._stack is not None:
                loop.run(serving_.__aexit__(None, None, None), timeout=60)
        finally:
            self._stack = None
            if loop is not None:
                loop.close()

    @property
    def stack(self) -> Stack:
        assert self._stack is not None, "Api used outside its `with` block"
        return self._stack

    def run(self, make: Callable[[Stack], Awaitable[T]], *, timeout: float = CALL) -> T:
        assert self._loop is not None

        async def go() -> T:
            return await make(self.stack)

        return self._loop.run(go(), timeout=timeout + 5)

    def unary(self, method: Callable[[Stack], Any], request: Any, *, timeout: float = CALL) -> Outcome:
        """``method(stack)`` is a unary stub method, e.g. ``lambda s: s.agent_executions.Get``."""

        async def call(stack: Stack) -> Outcome:
            try:
                return Outcome(reply=await method(stack)(request, timeout=timeout))
            except grpc.aio.AioRpcError as error:
                return Outcome(error=error)

        return self.run(call, timeout=timeout)

    def via_temporal(self, method: Callable[[Stack], Any], request: Any) -> Outcome:
        """A unary call that needs Temporal. UNAVAILABLE is a legitimate answer when a health check
        or a validation times out on a busy machine: it must carry the exact message, and since it
        promises that nothing was stored, the call is repeated once the connection is back."""
        outcome = self.unary(method, request)
        if outcome.code is grpc.StatusCode.UNAVAILABLE:
            assert outcome.details == UNAVAILABLE_MESSAGE, outcome.details
            self.unavailable_answers += 1
            self.run(lambda stack: stack.connected(timeout=30), timeout=30)
            outcome = self.unary(method, request)
        return outcome

    def stream(self, method: Callable[[Stack], Any], request: Any, *, timeout: float = STREAM) -> Outcome:
        """Read a server stream to its end (or its error)."""

        async def call(stack: Stack) -> Outcome:
            items: list[Any] = []
            try:
                async for item in method(stack)(request, timeout=timeout):
                    items.append(item)
            except grpc.aio.AioRpcError as error:
                return Outcome(items=tuple(items), error=error)
            return Outcome(items=tuple(items))

        return self.run(call, timeout=timeout)

    def serving_ok(self) -> bool:
        """The server still answers its health check (nothing crashed or wedged)."""
        request = health_pb2.HealthCheckRequest(service="")
        reply = self.unary(lambda s: s.health_stub.Check, request, timeout=5.0).reply
        return reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING


# ---------------------------------------------------------------------------------------- shared by the tests


def fuzz(examples: int) -> Callable[[Any], Any]:
    def apply(fn: Any) -> Any:
        configured = settings(
            max_examples=examples * SCALE,
            deadline=None,
            derandomize=SEED == 0,
            database=None,
            print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        )(fn)
        return seed(SEED)(configured) if SEED else configured

    return apply


def newest(api: Api, kind: str) -> str:
    """Id of the newest record of a kind, read from the store directly ("" if none)."""
    store = api.stack.store
    listing = {"aex": store.list_agent_executions, "wf": store.list_workflows, "wex": store.list_workflow_executions}
    records, _ = listing[kind](page_size=1)
    return records[0].id if records else ""


def healthy(api: Api) -> bool:
    """The server still serves, and Temporal said UNAVAILABLE only rarely (each was retried)."""
    assert api.unavailable_answers <= MAX_UNAVAILABLE, f"{api.unavailable_answers} UNAVAILABLE answers"
    return api.serving_ok()


def terminal(read: Callable[[], Any], *, what: str) -> Any:
    wait_until(lambda: read().phase.terminal, timeout=60, what=what)
    return read()


_UUID_FORM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


class RequestIds:
    """A model of the creates made with request ids (AIP-155), for one kind of record: what the
    server must answer to each one given those before it in the module."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[object, str]] = {}  # lower-case request id -> (body, record id)

    @staticmethod
    def valid(request_id: str) -> bool:
        """ "" (no deduplication) or a UUID in the 8-4-4-4-12 form, any case."""
        return request_id == "" or (request_id.isascii() and _UUID_FORM.fullmatch(request_id) is not None)

    def judge(self, request_id: str, body: object, outcome: Outcome) -> str:
        """Assert ``outcome`` is what the model expects; "new" (a record was made), "replayed" (the
        first one's record came back) or "refused"."""
        key = request_id.lower()
        if outcome.error is not None:
            if outcome.code is grpc.StatusCode.ALREADY_EXISTS:
                first = self.seen.get(key)
                assert request_id and first is not None, f"ALREADY_EXISTS for an unused request_id: {outcome.details}"
                assert first[0] != body, f"ALREADY_EXISTS for the same body: {outcome.details}"
                assert first[1] in outcome.details, f"does not name {first[1]}: {outcome.details}"
            elif outcome.details.startswith("request_id: "):
                assert not self.valid(request_id), f"refused a valid request_id {request_id!r}: {outcome.details}"
            return "refused"
        assert self.valid(request_id), f"accepted request_id {request_id[:80]!r}"
        reply = outcome.reply
        assert reply.request_id == key, (reply.request_id, key)
        if not key:
            return "new"
        first = self.seen.get(key)
        if first is not None:
            assert first == (body, reply.id), f"request {key}: first {first}, now {(body, reply.id)}"
            return "replayed"
        self.seen[key] = (body, reply.id)
        return "new"
