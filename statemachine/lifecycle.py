"""The Temporal connection lifecycle as an explicit `transitions` state machine.

The machine knows nothing of Temporal: what a transition *does* comes from injected effects
(:class:`Effects`), and time from an injected clock. One rule makes the rest easy to reason about:

    workers run, creators are injected and a client is held exactly while the state is CONNECTED.

The edges into CONNECTED start the workers and inject the creators *before* the state changes (a
failure rolls both back and the attempt counts as failed), and leaving CONNECTED withdraws the
creators, stops the workers and closes the client whatever those effects raise.

Dialling happens between two transitions rather than inside a callback: a dial may take seconds,
and ``shutdown()`` must be able to cancel it without waiting. Every operation that reads the state
and then fires a trigger runs under one lock in a shielded task, so transitions never interleave
and a cancelled caller never leaves one half done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from transitions.extensions.asyncio import AsyncMachine

from statemachine.backoff import BackoffPolicy
from statemachine.clock import Clock, SystemClock, with_timeout
from statemachine.events import EventLog, TransitionEvent
from statemachine.states import State, Trigger
from statemachine.table import Misconfiguration, describe, machine_transitions

if TYPE_CHECKING:
    from transitions.core import EventData

_log = logging.getLogger(__name__)

C = TypeVar("C")
R = TypeVar("R")


class Effects(Protocol[C]):
    """What the transitions do to the outside world. ``C`` is the client type.

    Teardown effects (``withdraw_creators``, ``stop_workers``, ``close_client``) must be idempotent
    and must have released their resource when they return *or raise*: the machine reports their
    errors but leaves CONNECTED regardless, since staying would claim workers that are gone.
    """

    async def dial(self) -> C: ...

    async def verify(self, client: C) -> None: ...

    async def start_workers(self, client: C) -> None: ...

    async def stop_workers(self) -> None: ...

    async def inject_creators(self, client: C) -> None: ...

    async def withdraw_creators(self) -> None: ...

    async def close_client(self, client: C) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """A consistent, lock-free view of the lifecycle for status reporting."""

    state: State
    since: float
    since_wall: float
    #: Consecutive failures since the last success; also the number of the next retry.
    attempt: int
    next_retry_at: float | None
    next_retry_in: float | None
    last_error: str
    #: Increments on every entry to CONNECTED; a failure report for an older generation is ignored.
    generation: int
    reconnect_count: int
    recent: tuple[TransitionEvent, ...]

    @property
    def connected(self) -> bool:
        return self.state is State.CONNECTED


class ConnectionLifecycle(Generic[C]):
    """The connection's state machine plus the few operations the service drives it with.

    Raw triggers (``start``, ``connect_ok``, ...) are bound by `transitions` and can be awaited
    directly (tests do); the service uses :meth:`attempt`, :meth:`report_failure` and
    :meth:`shutdown`, which check the state and fire the right trigger atomically.
    """

    state: State

    if TYPE_CHECKING:  # bound at runtime by transitions.Machine

        async def start(self, **kwargs: Any) -> bool: ...
        async def connect_ok(self, **kwargs: Any) -> bool: ...
        async def connect_failed(self, **kwargs: Any) -> bool: ...
        async def health_failed(self, **kwargs: Any) -> bool: ...
        async def reconnect(self, **kwargs: Any) -> bool: ...
        async def reconnect_ok(self, **kwargs: Any) -> bool: ...
        async def reconnect_failed(self, **kwargs: Any) -> bool: ...
        async def stop(self, **kwargs: Any) -> bool: ...

    def __init__(
        self,
        effects: Effects[C],
        *,
        backoff: BackoffPolicy | None = None,
        clock: Clock | None = None,
        attempt_timeout: float = 10.0,
        recent: int = 20,
    ) -> None:
        self._effects = effects
        self._backoff = backoff or BackoffPolicy()
        self._clock: Clock = clock or SystemClock()
        self._attempt_timeout = attempt_timeout
        self._recent = recent
        self.events = EventLog()
        self._client: C | None = None
        self._failures = 0
        self._attempt = 0
        self._delay = 0.0
        self._waited = 0.0
        self._next_retry_at: float | None = None
        self._last_error = ""
        self._since = self._clock.monotonic()
        self._since_wall = self._clock.wall()
        self._generation = 0
        self._reconnects = 0
        self._teardown_errors: tuple[str, ...] = ()
        self._lock = asyncio.Lock()
        self._dialling: asyncio.Future[C] | None = None
        self._superseded = ""  # why the attempt in flight was cancelled, if it was (see supersede)
        self._misconfigured = False  # the last attempt failed with a Misconfiguration
        self.machine = AsyncMachine(
            model=self,
            states=State,
            transitions=machine_transitions(bring_up="_bring_up"),
            initial=State.DISCONNECTED,
            auto_transitions=False,
            queued=True,
            send_event=True,
            after_state_change="_record",
        )
        self.machine.get_state(State.CONNECTED).add_callback("exit", "_tear_down")

    # ----------------------------------------------------------------- lock-free reads

    @property
    def client(self) -> C | None:
        """The verified client while CONNECTED, else None."""
        return self._client

    @property
    def generation(self) -> int:
        return self._generation

    def is_connected(self) -> bool:
        return self.state is State.CONNECTED

    def snapshot(self) -> Snapshot:
        now = self._clock.monotonic()
        retry_at = self._next_retry_at if self.state.waiting_to_retry else None
        return Snapshot(
            state=self.state,
            since=self._since,
            since_wall=self._since_wall,
            attempt=self._failures,
            next_retry_at=retry_at,
            next_retry_in=None if retry_at is None else max(0.0, retry_at - now),
            last_error=self._last_error,
            generation=self._generation,
            reconnect_count=self._reconnects,
            recent=tuple(self.events.recent(self._recent)),
        )

    @property
    def next_retry_at(self) -> float | None:
        """When the next scheduled attempt is due (monotonic), while one is scheduled."""
        return self._next_retry_at if self.state.waiting_to_retry else None

    @property
    def misconfigured(self) -> bool:
        """The last attempt failed with a :class:`Misconfiguration` (retries wait the backoff cap)."""
        return self._misconfigured and self.state.waiting_to_retry

    @property
    def next_delay(self) -> float:
        """The backoff that the next scheduled attempt waits for."""
        return self._delay

    # ----------------------------------------------------------------- operations

    async def attempt(self, *, cause: str = "scheduled retry", waited: float | None = None) -> bool:
        """Make one connection attempt from DISCONNECTED or UNHEALTHY.

        ``waited`` is the backoff that preceded it (recorded; defaults to the scheduled one).
        Returns True if the machine is CONNECTED afterwards. From any other state it starts
        nothing and just reports whether the machine is CONNECTED.
        """
        if not await self._serialized(self._begin_attempt, cause, waited):
            return self.is_connected()
        dial = asyncio.ensure_future(with_timeout(self._clock, self._dial_and_verify(), self._attempt_timeout))
        self._dialling = dial
        try:
            client = await dial
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled, not just the dial
            if self._superseded:
                cause, self._superseded = self._superseded, ""
                await self._serialized(self._conclude_failure, cause)
            return False  # shutdown() cancelled the dial; it moves the machine on
        except Exception as err:
            self._misconfigured = isinstance(err, Misconfiguration)
            await self._serialized(self._conclude_failure, describe(err))
            return False
        finally:
            self._dialling = None
        return await self._serialized(self._conclude_success, client)

    async def report_failure(self, cause: str, *, generation: int | None = None, client: C | None = None) -> bool:
        """CONNECTED -> UNHEALTHY because something saw Temporal fail.

        ``generation`` (from :attr:`generation` when the failing call started) or ``client`` (the
        client the failing call used) make a late report about an already replaced connection a
        no-op. Returns True if the machine moved.
        """
        return await self._serialized(self._fail_health, cause, generation, client)

    def supersede(self, cause: str) -> bool:
        """Give up the attempt in flight (it fails with ``cause``) so that a fresh one can start.

        For an attempt that hangs on a connection made while Temporal was away (a proxy that
        holds it open): when Temporal answers again, waiting out its timeout only costs time.
        Returns False when no attempt is in flight.
        """
        if self._dialling is None or self._dialling.done():
            return False
        self._superseded = cause
        self._dialling.cancel()
        return True

    async def shutdown(self, *, cause: str = "shutdown") -> None:
        """Stop for good from any state; safe to call twice. Cancels an in-flight dial."""
        if self._dialling is not None:
            self._dialling.cancel()
        await self._serialized(self._stop, cause)

    # ----------------------------------------------------------------- critical sections

    async def _serialized(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        async def run() -> R:
            async with self._lock:
                return await fn(*args)

        # Shielded: a caller cancelled mid-transition must not leave workers half started.
        return await asyncio.shield(run())

    async def _begin_attempt(self, cause: str, waited: float | None) -> bool:
        self._attempt = self._failures
        self._waited = self._delay if waited is None else waited
        if self.state is State.DISCONNECTED:
            await self.start(cause=cause)
            return True
        if self.state is State.UNHEALTHY:
            await self.reconnect(cause=cause)
            return True
        return False

    async def _conclude_failure(self, cause: str) -> None:
        if self.state is State.CONNECTING:
            await self.connect_failed(cause=cause)
        elif self.state is State.RECONNECTING:
            await self.reconnect_failed(cause=cause)

    async def _conclude_success(self, client: C) -> bool:
        if not self.state.dialling:  # stopped while dialling
            await self._quietly("close_client", self._effects.close_client(client))
            return False
        first = self.state is State.CONNECTING
        try:
            if first:
                await self.connect_ok(client=client, cause="connected")
            else:
                await self.reconnect_ok(client=client, cause="reconnected")
        except Exception as err:  # _bring_up rolled back workers and creators
            await self._quietly("close_client", self._effects.close_client(client))
            await self._conclude_failure(describe(err))
            return False
        return True

    async def _fail_health(self, cause: str, generation: int | None, client: C | None) -> bool:
        if self.state is not State.CONNECTED:
            return False
        if generation is not None and generation != self._generation:
            return False
        if client is not None and client is not self._client:
            return False
        await self.health_failed(cause=cause)
        return True

    async def _stop(self, cause: str) -> None:
        if self.state is not State.STOPPED:
            await self.stop(cause=cause)

    async def _dial_and_verify(self) -> C:
        client = await self._effects.dial()
        try:
            await self._effects.verify(client)
        except BaseException:
            await self._quietly("close_client", self._effects.close_client(client))
            raise
        return client

    # ----------------------------------------------------------------- callbacks

    async def _bring_up(self, event: EventData) -> None:
        client: C = event.kwargs["client"]
        try:
            await self._effects.start_workers(client)
            await self._effects.inject_creators(client)
        except BaseException:
            await self._quietly("withdraw_creators", self._effects.withdraw_creators())
            await self._quietly("stop_workers", self._effects.stop_workers())
            raise
        self._client = client

    async def _tear_down(self, event: EventData) -> None:
        client, self._client = self._client, None
        errors = [
            await self._quietly("withdraw_creators", self._effects.withdraw_creators()),
            await self._quietly("stop_workers", self._effects.stop_workers()),
        ]
        if client is not None:
            errors.append(await self._quietly("close_client", self._effects.close_client(client)))
        self._teardown_errors = tuple(e for e in errors if e)

    def _record(self, event: EventData) -> None:
        assert event.transition is not None and event.transition.dest is not None
        trigger = Trigger(event.event.name)
        source, dest = State[event.transition.source], State[event.transition.dest]
        cause = str(event.kwargs.get("cause", ""))
        now = self._clock.monotonic()
        attempt, backoff = self._attempt, 0.0
        if trigger.succeeded:
            self._failures, self._next_retry_at, self._delay, self._misconfigured = 0, None, 0.0, False
            self._generation += 1
            self._reconnects += trigger is Trigger.RECONNECT_OK
        elif trigger.failed:
            if trigger is Trigger.HEALTH_FAILED:
                attempt, self._misconfigured = 0, False
            self._failures += 1
            # Misconfigured: straight to the cap (a number of failures that surely reaches it).
            failures = max(self._failures, 64) if self._misconfigured else self._failures
            self._delay = backoff = self._backoff.delay(failures)
            self._next_retry_at = now + backoff
            self._last_error = cause
        elif trigger.dials:
            backoff = self._waited
        elif trigger is Trigger.STOP:
            attempt, self._next_retry_at = self._failures, None
        self._since, self._since_wall = now, self._clock.wall()
        errors, self._teardown_errors = self._teardown_errors, ()
        self.events.append(
            TransitionEvent(
                seq=self.events.next_seq(),
                source=source,
                dest=dest,
                trigger=trigger,
                cause=cause,
                attempt=attempt,
                backoff=backoff,
                at=now,
                wall=self._since_wall,
                errors=errors,
            )
        )

    async def _quietly(self, what: str, effect: Awaitable[None]) -> str:
        """Run a teardown effect; return its error as text instead of raising it."""
        try:
            await effect
        except Exception as err:
            _log.warning("%s failed: %s", what, describe(err))
            return f"{what}: {describe(err)}"
        return ""
