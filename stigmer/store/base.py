"""What every store method rests on: the database, change listeners, and one transition helper.

Listeners hear about a change only after it is committed, and are called after the lock is
released, so a slow or re-entrant listener (one that reads the store) cannot deadlock or stall
other writers.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from loguru import logger

from .db import Database

__all__ = ["AGENT_EXECUTION", "WORKFLOW", "WORKFLOW_EXECUTION", "Listener", "StoreBase", "now"]

# Kinds passed to listeners.
AGENT_EXECUTION = "agent_execution"
WORKFLOW = "workflow"
WORKFLOW_EXECUTION = "workflow_execution"

Listener = Callable[[str, str], None]
T = TypeVar("T")


def now(at: float | None) -> float:
    return time.time() if at is None else at


class StoreBase:
    """The database and its listeners; Store adds the methods of each record kind."""

    def __init__(self, *, database: Database) -> None:
        self._db = database
        self.path: Path = database.path
        self._listeners: dict[int, Listener] = {}
        self._listener_keys = itertools.count()
        self._listeners_lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

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
        with self._listeners_lock:
            listeners = list(self._listeners.values())
        for fn in listeners:
            try:
                fn(kind, id)
            except Exception:
                # The change is already committed; one broken watcher must not fail the writer.
                logger.exception("Store listener {!r} failed on {} {}", fn, kind, id)

    def _change(self, kind: str, id: str, doing: str, change: Callable[[sqlite3.Connection], tuple[T, bool]]) -> T:
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
