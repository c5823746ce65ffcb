"""The ordered record of every transition the lifecycle made."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from statemachine.states import State, Trigger


@dataclass(frozen=True, kw_only=True)
class TransitionEvent:
    """One transition, as it happened."""

    #: 1, 2, 3, ... in the order transitions completed; never reused, never skipped.
    seq: int
    source: State
    dest: State
    trigger: Trigger
    #: Why it happened: the error that failed a dial or a health check, "fast path", "shutdown", ...
    cause: str
    #: Consecutive failures so far (the retry number for start/reconnect, 0 once connected).
    attempt: int
    #: Seconds of backoff: scheduled before the next retry (failures), or waited before this one
    #: (start/reconnect; 0 for the first dial and for a fast-path attempt).
    backoff: float = 0.0
    #: Clock.monotonic() when the transition completed.
    at: float
    #: Clock.wall() at the same moment, for people.
    wall: float
    #: Errors raised by teardown effects while leaving CONNECTED (the transition still happened).
    errors: tuple[str, ...] = ()


_log = logging.getLogger(__name__)

Listener = Callable[[TransitionEvent], None]


class EventLog:
    """Append-only, in order, nothing dropped; readers can wait for what comes next."""

    def __init__(self) -> None:
        self._events: list[TransitionEvent] = []
        self._listeners: list[Listener] = []
        self._grew = asyncio.Event()

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[TransitionEvent]:
        return iter(list(self._events))

    @property
    def last_seq(self) -> int:
        return self._events[-1].seq if self._events else 0

    def next_seq(self) -> int:
        return self.last_seq + 1

    def append(self, event: TransitionEvent) -> None:
        if event.seq != self.next_seq():
            raise ValueError(f"event {event.seq} out of order (expected {self.next_seq()})")
        self._events.append(event)
        # Swap the event before setting it, so that a waiter that wakes up and waits again
        # waits for the *next* append rather than spinning on this one.
        grew, self._grew = self._grew, asyncio.Event()
        grew.set()
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken observer must not break the record or the machine
                _log.exception("transition listener %r failed on event %s", listener, event.seq)

    def since(self, seq: int) -> list[TransitionEvent]:
        """Events with a sequence number above ``seq``, oldest first."""
        # seq numbers are dense from 1, so the index is the number.
        return self._events[max(0, seq) :]

    def recent(self, count: int) -> list[TransitionEvent]:
        return self._events[-count:] if count > 0 else []

    async def wait_beyond(self, seq: int) -> list[TransitionEvent]:
        """Return the events after ``seq``, waiting for one if there are none yet."""
        while self.last_seq <= seq:
            await self._grew.wait()
        return self.since(seq)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` synchronously after each append; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe
