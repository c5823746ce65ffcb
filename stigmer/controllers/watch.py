"""Store listener -> async iterator: follow one record until it reaches a terminal phase.

The store calls listeners from whichever thread wrote (an activity's worker thread, usually),
so the listener only hops onto the watcher's event loop with `call_soon_threadsafe` and sets an
event; the watcher then reads the record itself. Reading rather than passing records along
means a burst of changes collapses into one read, and a watcher never sees a stale version.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

from stigmer.store import Phase, Store


class Followable(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def phase(self) -> Phase: ...


R = TypeVar("R", bound=Followable)

#: Re-read this often even without a notification: a write from another process (a second
#: server on the same data dir) notifies nobody here. Notifications make the common case instant.
DEFAULT_RECHECK_INTERVAL = 5.0


async def follow(
    store: Store,
    *,
    kind: str,
    id: str,
    read: Callable[[str], R],
    recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
) -> AsyncIterator[R]:
    """Yield the record now, then each new version; stop after yielding a terminal one.

    `read` raises if the record is gone (the controllers pass their `get`, which raises NotFoundError).
    The listener is removed however the iteration ends: exhausted, closed, or cancelled.
    """
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:
        changed.set()

    def listener(changed_kind: str, changed_id: str) -> None:
        if changed_kind == kind and changed_id == id:
            # The loop may be closed already if a write lands after the server stopped.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake)

    # Subscribe before the first read, so no change can fall between reading and listening.
    unsubscribe = store.add_listener(listener)
    try:
        last_version: int | None = None
        while True:
            changed.clear()
            record = read(id)
            if record.version != last_version:
                last_version = record.version
                yield record
            if record.phase.terminal:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=recheck_interval)
    finally:
        unsubscribe()
