"""What the per-table SQL needs of a database connection, whichever backend runs it.

The table modules write plain SQL with ``?`` placeholders and read rows by column name. SQLite's
own connection (rows as ``sqlite3.Row``) satisfies :class:`Connection` as it is; the PostgreSQL
backend hands them an adapter (``postgres.PgConnection``) that binds the same parameters as
``%s`` and returns dict rows. User input is only ever a bound parameter; the only text formatted
into SQL is our own constant table and column names.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg

__all__ = [
    "INTEGRITY_ERRORS",
    "Connection",
    "Cursor",
    "RequestRace",
    "Row",
    "for_share",
    "for_update",
    "refused_insert",
]


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


#: A unique (or other constraint) violation, from either backend.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)


def for_update(conn: Connection) -> str:
    """The row-lock clause for a read that a write in the same transaction depends on.

    SQLite needs none (``BEGIN IMMEDIATE`` holds the whole database); PostgreSQL locks the row so
    that two processes' read-check-write of one record run one after the other.
    """
    return "" if isinstance(conn, sqlite3.Connection) else " FOR UPDATE"


def for_share(conn: Connection) -> str:
    """A shared row lock: the row must not be deleted before this transaction commits."""
    return "" if isinstance(conn, sqlite3.Connection) else " FOR SHARE"


class RequestRace(Exception):
    """Another process inserted a record with the same request id between our lookup and our insert:
    the store runs the create again, and then finds that record."""


def refused_insert(exc: Exception, *, request_id: str | None, message: str) -> Exception:
    """What a refused INSERT means. With a request id, possibly that another process's attempt of the
    same create got in first (whichever unique index refused it: PostgreSQL may check the name's
    before the request id's): RequestRace, so the store looks again; else AlreadyExistsError."""
    from stigmer.errors import AlreadyExistsError

    if request_id is not None:
        return RequestRace(message)
    return AlreadyExistsError(message)
