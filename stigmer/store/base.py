"""What every store method rests on: a backend, change listeners, and one transition helper.

Listeners hear about a change only after it is committed, and are called after the lock is
released, so a slow or re-entrant listener (one that reads the store) cannot deadlock or stall
other writers. A backend shared by several processes (PostgreSQL) also announces each change to
the others and delivers theirs to these same listeners.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

from loguru import logger

from .sql import Connection

__all__ = ["AGENT_EXECUTION", "WORKFLOW", "WORKFLOW_EXECUTION", "Backend", "Lease", "Listener", "StoreBase", "now"]

# Kinds passed to listeners.
AGENT_EXECUTION = "agent_execution"
WORKFLOW = "workflow"
WORKFLOW_EXECUTION = "workflow_execution"

Listener = Callable[[str, str], None]
T = TypeVar("T")


def now(at: float | None) -> float:
    return time.time() if at is None else at


class Backend(Protocol):
    """A database the store runs its transactions on (db.Database: SQLite; postgres.PgDatabase)."""

    @property
    def path(self) -> Path | str: ...

    @property
    def closed(self) -> bool: ...

    def read(self, doing: str) -> AbstractContextManager[Connection]: ...

    def write(self, doing: str) -> AbstractContextManager[Connection]: ...

    def announce(self, kind: str, id: str) -> None:
        """Tell other processes about a committed change (a no-op for a single-process backend)."""
        ...

    def subscribe(self, deliver: Callable[[str, str], None]) -> None:
        """Deliver other processes' changes from now on (a no-op for a single-process backend)."""
        ...

    @property
    def available(self) -> bool:
        """Whether the database answers (a SQLite file always does, once open)."""
        ...

    def on_availability(self, fn: Callable[[bool], None]) -> None: ...

    def lease(self, key: int) -> Lease: ...

    def close(self) -> None: ...


class Lease(Protocol):
    """Leadership among the processes sharing a store (one reconciler at a time)."""

    def acquire(self) -> bool:
        """True while this process holds it (taking it if free); blocks for a round trip."""
        ...

    def release(self) -> None: ...


class StoreBase:
    """The database and its listeners; Store adds the methods of each record kind."""

    def __init__(self, *, database: Backend) -> None:
        self._db = database
        self.path: Path | str = database.path
        self._listeners: dict[int, Listener] = {}
        self._listener_keys = itertools.count()
        self._listeners_lock = threading.Lock()
        database.subscribe(self._deliver)

    def close(self) -> None:
        self._db.close()

    @property
    def available(self) -> bool:
        """False while the database does not answer (store calls then raise DatabaseUnavailableError)."""
        return self._db.available

    def on_availability(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(available)`` whenever that changes (from a background thread)."""
        self._db.on_availability(fn)

    def lease(self, key: int) -> Lease:
        """Leadership among the processes sharing this store (always held for SQLite)."""
        return self._db.lease(key)

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- change notification ------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(kind, id)`` after each committed change; returns an idempotent unsubscribe."""
        with self._listeners_lock:
            key = next(self._listener_keys)
            self._listeners[key] = fn

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners.pop(key, None)

        return unsubscribe

    def _notify(self, kind: str, id: str) -> None:
        self._db.announce(kind, id)
        self._deliver(kind, id)

    def _deliver(self, kind: str, id: str) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners.values())
        for fn in listeners:
            try:
                fn(kind, id)
            except Exception:
                # The change is already committed; one broken watcher must not fail the writer.
                logger.exception("Store listener {!r} failed on {} {}", fn, kind, id)

    def _change(self, kind: str, id: str, doing: str, change: Callable[[Connection], tuple[T, bool]]) -> T:
        """Run one transition in a write transaction; notify if it changed the record."""
        with self._db.write(doing) as conn:
            record, changed = change(conn)
        if changed:
            self._notify(kind, id)
        return record

    def _notify_all(self, kind: str, ids: Sequence[str], steps: Sequence[str]) -> None:
        for id in ids:
            self._notify(kind, id)
        for step in steps:
            self._notify(AGENT_EXECUTION, step)
