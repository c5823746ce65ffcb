"""``--exit-after-outage``: for operators whose supervisor (systemd, Kubernetes) prefers restarts.

The guide asks "Can I disable auto-reconnection?". Reconnection stays on -- it is the point of
this server -- but an operator may cap how long the server goes on without Temporal: after
``limit`` seconds without CONNECTED (counted from start, or from the moment the connection was
lost) the server stops cleanly and exits 69 (EX_UNAVAILABLE), saying why. Off by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports parse_duration; it must not pay for the state machine
    from statemachine import ConnectionLifecycle, TransitionEvent

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """'90', '90s', '1.5m', '2h', '500ms' -> seconds (> 0); ValueError names what it wants."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ValueError(f"expected a duration like 90s, 5m or 1h (> 0), got {text!r}")
    return seconds


class OutageLimit:
    """Sets ``stop`` once the lifecycle has been away from CONNECTED for ``limit`` seconds."""

    def __init__(
        self, lifecycle: ConnectionLifecycle[Any], limit: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lifecycle = lifecycle
        self.limit = limit
        self._clock = clock
        self._since: float | None = None if lifecycle.is_connected() else clock()
        self._changed = asyncio.Event()
        self._unsubscribe = lifecycle.events.subscribe(self._on_event)
        self.tripped = False

    def _on_event(self, event: TransitionEvent) -> None:
        from statemachine import State

        if event.dest is State.CONNECTED:
            self._since = None
        elif event.source is State.CONNECTED:
            self._since = self._clock()
        self._changed.set()

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: set it (and ``tripped``) when the limit is reached."""
        try:
            while not stop.is_set():
                self._changed.clear()
                if self._since is None:
                    await self._changed.wait()
                    continue
                left = self._since + self.limit - self._clock()
                if left <= 0:
                    self.tripped = True
                    stop.set()
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=left)
        finally:
            self._unsubscribe()
