"""The loops that drive the lifecycle: the retry timer, the health ticker and the fast path.

They are tasks owned here, never loops inside transition callbacks (AsyncMachine cancels running
callbacks when a new transition fires). Both loops wait on the injected clock, so tests move time
by hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from statemachine.clock import Clock, SystemClock, with_timeout
from statemachine.events import TransitionEvent
from statemachine.lifecycle import ConnectionLifecycle
from statemachine.states import State
from statemachine.table import describe

C = TypeVar("C")

HealthCheck = Callable[[C], Awaitable[None]]
#: "Does Temporal answer?", asked for the outage that began at the given time (the supervisor's
#: clock): True or False, or None while it knows nothing yet about this outage.
Probe = Callable[[float], Awaitable["bool | None"]]
#: "Is Temporal still there?": None when it answered, else the reason in words.
Liveness = Callable[[], Awaitable["str | None"]]

#: The cause an attempt given up by the comeback probe fails with.
SUPERSEDED = "given up for a fresh attempt: Temporal answers again"

#: Longest spacing between the comeback probe's eager attempts (see Supervisor._probe_loop).
EAGER_SPACING_CAP = 1.0


class Supervisor(Generic[C]):
    """Keeps a :class:`ConnectionLifecycle` moving towards CONNECTED until closed.

    - retry timer: from DISCONNECTED/UNHEALTHY, attempts again when the backoff the lifecycle
      scheduled is due -- not on the health tick, so a retry after 1 s happens after 1 s;
    - health ticker: every ``health_interval`` while CONNECTED, ``check(client)`` bounded by
      ``check_timeout``; a failure (or time-out) reports the connection unhealthy;
    - fast path: :meth:`request_attempt` lets a request that found Temporal unavailable ask for
      one immediate attempt (single-flight, at most one per ``fast_path_interval``) and wait a
      bounded time for its outcome;
    - comeback probe (optional): while not CONNECTED, ``probe()`` (a cheap "does Temporal
      answer?"; the service asks in gRPC) runs every ``probe_interval`` for the first
      ``probe_fast_for`` seconds of an outage, then every ``probe_slow_interval``. When it goes
      from "no" to "yes" -- Temporal (re)started -- an attempt is made at once, then at growing
      spacing (``probe_interval`` doubling, at most 1 s) for ``eager_window`` seconds instead
      of waiting out a backoff of up to 30 s. An attempt in flight when the probe says "yes"
      is superseded if the probe said "no" just before it began or while it ran: it may hang
      on a connection a proxy holds open. A probe that never changes its answer (a black
      hole, a missing namespace) costs no extra attempts;
    - liveness watch (optional): every ``liveness_interval`` while CONNECTED, ``liveness()``
      (a cheap RPC of its own, bounded by its own deadline); a reason back reports the
      connection unhealthy at once, where the health check would notice only at its next tick.
    """

    def __init__(
        self,
        lifecycle: ConnectionLifecycle[C],
        *,
        check: HealthCheck[C],
        health_interval: float = 15.0,
        check_timeout: float = 2.0,
        fast_path_interval: float = 1.0,
        clock: Clock | None = None,
        probe: Probe | None = None,
        probe_interval: float = 0.5,
        probe_slow_interval: float | None = None,
        probe_fast_for: float = 10.0,
        eager_window: float = 10.0,
        liveness: Liveness | None = None,
        liveness_interval: float = 1.0,
        liveness_timeout: float = 10.0,
    ) -> None:
        if health_interval <= 0:
            raise ValueError(f"health_interval must be > 0, got {health_interval}")
        self.lifecycle = lifecycle
        self._check = check
        self.health_interval = health_interval
        self._check_timeout = check_timeout
        self._fast_path_interval = fast_path_interval
        self._clock: Clock = clock or SystemClock()
        self._wake = asyncio.Event()
        self._fast_requested = ""  # the cause of a pending fast attempt, "" for none
        self._last_fast: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe = lifecycle.events.subscribe(self._on_event)
        self._closed = False
        self._probe = probe
        self._probe_interval = probe_interval
        #: Restarts mostly take seconds: probe every probe_interval for the first probe_fast_for
        #: seconds of an outage (and while an eager window is open), then every probe_slow_interval.
        self._probe_slow_interval = probe_interval if probe_slow_interval is None else probe_slow_interval
        self._probe_fast_for = probe_fast_for
        self._eager_window = eager_window
        self._eager_until: float | None = None
        self._eager_attempts, self._next_eager = 0, 0.0
        #: The probe's newest verdict this outage (None: none yet), and whether the attempt in
        #: flight began after a "no" or saw one (then a "yes" supersedes it).
        self._answering: bool | None = None
        self._attempt_doubtful = False
        self._probe_news = asyncio.Event()
        self._liveness = liveness
        self._liveness_interval = liveness_interval
        #: A backstop only: the liveness call is expected to bound itself (an RPC deadline).
        self._liveness_timeout = liveness_timeout

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._closed

    def start(self) -> None:
        """Start both loops; the first attempt is made at once."""
        if self._tasks or self._closed:
            raise RuntimeError("supervisor already started")
        self._tasks = [
            asyncio.create_task(self._retry_loop(), name="stigmer-temporal-retry"),
            asyncio.create_task(self._health_loop(), name="stigmer-temporal-health"),
        ]
        if self._probe is not None:
            self._tasks.append(asyncio.create_task(self._probe_loop(self._probe), name="stigmer-temporal-probe"))
        if self._liveness is not None:
            watch = asyncio.create_task(self._liveness_loop(self._liveness), name="stigmer-temporal-liveness")
            self._tasks.append(watch)

    async def close(self) -> None:
        """Stop both loops and shut the lifecycle down (workers, creators, client). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        # Cancel first, then shut down: shutdown() also cancels a dial the retry loop is awaiting.
        await self.lifecycle.shutdown()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._unsubscribe()

    async def request_attempt(self, *, wait: float) -> bool:
        """Ask for an immediate attempt if none is in flight; wait up to ``wait`` s for CONNECTED.

        Returns True when the machine is CONNECTED, False when the attempt failed, was
        rate-limited with nothing in flight, or the wait ran out.
        """
        lifecycle = self.lifecycle
        if lifecycle.is_connected():
            return True
        if lifecycle.state is State.STOPPED or self._closed or lifecycle.misconfigured:
            return False  # misconfigured: an attempt per request would not fix it, only hammer Temporal
        seen = lifecycle.events.last_seq
        if lifecycle.state.waiting_to_retry and not self._ask_for_attempt():
            return False
        try:
            return await with_timeout(self._clock, self._outcome_after(seen), wait)
        except TimeoutError:
            return lifecycle.is_connected()

    def _ask_for_attempt(self, cause: str = "fast path", *, rate_limited: bool = True) -> bool:
        """Wake the retry loop for an immediate attempt, at most once per fast-path interval."""
        now = self._clock.monotonic()
        if rate_limited:
            if self._last_fast is not None and now - self._last_fast < self._fast_path_interval:
                return False
            self._last_fast = now
        self._fast_requested = cause
        self._wake.set()
        return True

    async def _outcome_after(self, seen: int) -> bool:
        """Wait for an attempt begun after event ``seen`` (or one in flight) to conclude."""
        while True:
            for event in await self.lifecycle.events.wait_beyond(seen):
                seen = event.seq
                if event.dest is State.CONNECTED:
                    return True
                if event.trigger.attempt_failed or event.dest is State.STOPPED:
                    return False

    async def _retry_loop(self) -> None:
        lifecycle = self.lifecycle
        while True:
            # Clear before reading the state: a transition after this point sets it again, so no
            # wake-up is lost between the check and the wait.
            self._wake.clear()
            state = lifecycle.state
            if state is State.STOPPED:
                return
            if not state.waiting_to_retry:
                await self._wake.wait()
                continue
            due = lifecycle.next_retry_at
            now = self._clock.monotonic()
            if self._fast_requested:
                cause, self._fast_requested = self._fast_requested, ""
                await lifecycle.attempt(cause=cause, waited=0.0)
            elif due is None:
                await lifecycle.attempt(cause="first dial")
            elif now >= due:
                await lifecycle.attempt(cause="scheduled retry")
            else:
                with contextlib.suppress(TimeoutError):
                    await with_timeout(self._clock, self._wake.wait(), due - now)

    async def _health_loop(self) -> None:
        lifecycle = self.lifecycle
        while lifecycle.state is not State.STOPPED:
            await self._clock.sleep(self.health_interval)
            client, generation = lifecycle.client, lifecycle.generation
            if client is None or not lifecycle.is_connected():
                continue
            try:
                await with_timeout(self._clock, self._check(client), self._check_timeout)
            except TimeoutError:
                await lifecycle.report_failure(
                    f"health check timed out after {self._check_timeout:g}s", generation=generation
                )
            except Exception as err:
                await lifecycle.report_failure(f"health check failed: {describe(err)}", generation=generation)

    async def _liveness_loop(self, liveness: Liveness) -> None:
        lifecycle = self.lifecycle
        while lifecycle.state is not State.STOPPED:
            await self._clock.sleep(self._liveness_interval)
            if not lifecycle.is_connected():
                continue
            generation = lifecycle.generation
            try:
                reason = await with_timeout(self._clock, liveness(), self._liveness_timeout)
            except TimeoutError:
                reason = f"no answer within {self._liveness_timeout:g}s"
            except Exception as err:  # e.g. a certificate file gone: the real client would fail too
                reason = describe(err)
            if reason is not None:
                await lifecycle.report_failure(f"health probe failed: {reason}", generation=generation)

    def probe_has_news(self) -> None:
        """The probe learned something (an answer came back): look now, not at the next tick."""
        self._probe_news.set()

    def _on_event(self, event: TransitionEvent) -> None:
        if event.dest.dialling:
            self._attempt_doubtful = self._answering is False
        self._wake.set()

    def _next_probe_in(self, outage_since: float | None) -> float:
        now = self._clock.monotonic()
        eager = self._eager_until is not None and now < self._eager_until
        if outage_since is None:  # CONNECTED: only watching for the connection's loss
            return self._probe_slow_interval
        if eager or now - outage_since < self._probe_fast_for:
            return self._probe_interval
        return self._probe_slow_interval

    def _open_eager_window(self, now: float) -> None:
        self._eager_until = now + self._eager_window
        self._eager_attempts, self._next_eager = 0, now

    def _eager_attempt(self, now: float) -> None:
        """At once on the edge, then at growing spacing (probe_interval, doubling, capped at
        EAGER_SPACING_CAP): a server that just started answering is usually well under a second
        from ready, and an address that flaps must not draw an attempt per probe."""
        self._ask_for_attempt("Temporal answers again", rate_limited=False)
        self._next_eager = now + min(self._probe_interval * 2**self._eager_attempts, EAGER_SPACING_CAP)
        self._eager_attempts += 1

    async def _probe_loop(self, probe: Probe) -> None:
        lifecycle = self.lifecycle
        outage_since: float | None = self._clock.monotonic()  # starting counts as an outage
        while lifecycle.state is not State.STOPPED:
            with contextlib.suppress(TimeoutError):
                await with_timeout(self._clock, self._probe_news.wait(), self._next_probe_in(outage_since))
            self._probe_news.clear()
            if lifecycle.state is State.CONNECTED:
                self._answering = None  # judge edges afresh each time the connection is lost
                outage_since = None
                continue
            if outage_since is None:
                outage_since = self._clock.monotonic()
            try:
                verdict = await with_timeout(self._clock, probe(outage_since), max(self._probe_interval, 0.5))
            except Exception:
                verdict = False
            if verdict is None:
                continue  # nothing known about this outage yet
            now = self._clock.monotonic()
            edge = verdict and self._answering is False
            self._answering = verdict
            if lifecycle.state.dialling:
                if not verdict:
                    self._attempt_doubtful = True
                elif self._attempt_doubtful and lifecycle.supersede(SUPERSEDED):
                    self._attempt_doubtful = False
                    self._open_eager_window(now)
                    self._eager_attempt(now)
                elif edge:
                    self._open_eager_window(now)  # for when the attempt in flight concludes
                continue
            if edge:
                self._open_eager_window(now)
            if verdict and self._eager_until is not None and self._eager_until > now >= self._next_eager:
                self._eager_attempt(now)
