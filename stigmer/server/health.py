"""grpc.health.v1 for the server: readiness mirrors the connection lifecycle.

Two services are reported:

* ``""`` (the whole server): SERVING while the process serves, NOT_SERVING once shutdown began.
* ``"stigmer.temporal"``: SERVING exactly while the lifecycle is CONNECTED, i.e. exactly while
  workers run and creators are injected (the lifecycle's invariant), so a probe that sees it
  SERVING knows that a Create will be accepted.
* ``"stigmer.database"``: SERVING while the store's database answers (always, for SQLite);
  NOT_SERVING while PostgreSQL is unreachable and store calls answer UNAVAILABLE.

The lifecycle announces transitions synchronously (``EventLog.subscribe``) while the grpc aio
health servicer's ``set`` is a coroutine; one pump task applies the statuses in order, so a
Watch stream never sees them out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol, TypeAlias

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from statemachine import State, TransitionEvent

OVERALL = ""
TEMPORAL_SERVICE = "stigmer.temporal"
DATABASE_SERVICE = "stigmer.database"

#: health_pb2.HealthCheckResponse.ServingStatus values (plain ints on the wire and in Python).
ServingStatus: TypeAlias = int
SERVING: ServingStatus = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: ServingStatus = health_pb2.HealthCheckResponse.NOT_SERVING


class TransitionFeed(Protocol):
    def subscribe(self, listener: Callable[[TransitionEvent], None]) -> Callable[[], None]: ...


class LifecycleView(Protocol):
    """The part of ConnectionLifecycle health needs: the current state and the transition feed."""

    @property
    def events(self) -> TransitionFeed: ...

    def is_connected(self) -> bool: ...


class DatabaseView(Protocol):
    """The part of the store health needs: whether its database answers, and changes of that."""

    @property
    def available(self) -> bool: ...

    def on_availability(self, fn: Callable[[bool], None]) -> None: ...


def temporal_status(state: State) -> ServingStatus:
    return SERVING if state is State.CONNECTED else NOT_SERVING


class ServerHealth:
    """Owns the aio HealthServicer and keeps ``stigmer.temporal`` in step with the lifecycle."""

    def __init__(self, lifecycle: LifecycleView, *, database: DatabaseView | None = None) -> None:
        self.servicer = health_aio.HealthServicer()
        self._lifecycle = lifecycle
        self._database = database
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.Queue[tuple[str, ServingStatus]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._last: ServingStatus | None = None

    @property
    def is_running(self) -> bool:
        return self._pump is not None and not self._pump.done()

    async def start(self) -> None:
        """Report the current state, then follow every transition. Call once, on the server's loop."""
        if self._pump is not None:
            raise RuntimeError("ServerHealth.start() called twice")
        # Subscribe before reading the state: a transition in between is then queued, not lost.
        self._unsubscribe = self._lifecycle.events.subscribe(self._on_transition)
        current = SERVING if self._lifecycle.is_connected() else NOT_SERVING
        self._last = current
        self._loop = asyncio.get_running_loop()
        await self.servicer.set(OVERALL, SERVING)
        await self.servicer.set(TEMPORAL_SERVICE, current)
        if self._database is not None:
            self._database.on_availability(self._on_database)
            await self.servicer.set(DATABASE_SERVICE, SERVING if self._database.available else NOT_SERVING)
        self._pump = asyncio.create_task(self._apply_forever(), name="stigmer-health-pump")

    def _on_database(self, available: bool) -> None:
        # From the store's prober thread: hand it to the loop, in order with everything else.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            status = SERVING if available else NOT_SERVING
            loop.call_soon_threadsafe(self._pending.put_nowait, (DATABASE_SERVICE, status))

    def _on_transition(self, event: TransitionEvent) -> None:
        status = temporal_status(event.dest)
        # CONNECTING -> DISCONNECTED and the like change nothing a probe can see.
        if status != self._last:
            self._last = status
            self._pending.put_nowait((TEMPORAL_SERVICE, status))

    async def _apply_forever(self) -> None:
        while True:
            service, status = await self._pending.get()
            await self.servicer.set(service, status)

    async def set_not_serving_all(self) -> None:
        """Shutdown began: every service NOT_SERVING for good (later transitions are ignored)."""
        await self._stop_following()
        await self.servicer.enter_graceful_shutdown()

    async def close(self) -> None:
        """Stop following the lifecycle; safe to call twice and without start()."""
        await self._stop_following()

    async def _stop_following(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
