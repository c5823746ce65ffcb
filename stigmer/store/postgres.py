"""The PostgreSQL backend: a psycopg 3 connection pool, the schema under an advisory lock, and
change notifications across processes.

Why psycopg 3 and psycopg-pool: the reference PostgreSQL driver for Python, plain SQL with bound
parameters (the table modules' SQL runs as it is, ``?`` bound as ``%s``), real server-side
LISTEN/NOTIFY, and a pool that replaces broken connections by itself. No ORM: every statement is
ours and visible in the table modules.

Transactions run at READ COMMITTED; a transition's read-check-write locks the row it read
(``SELECT ... FOR UPDATE``, ``sql.for_update``) and its UPDATE repeats the phase guard, so two
processes never both complete, fail or cancel one execution.

PostgreSQL down (at start, or later): the server keeps serving. The first failure marks the database
unavailable; from then on store calls answer DatabaseUnavailableError at once (gRPC UNAVAILABLE,
"database unavailable: ...") instead of each waiting out the pool's timeout, while a prober thread
connects every PROBE_INTERVAL s. When it succeeds (and, after a start without the database, the
schema is in place) the database is available again; the pool has replaced broken connections.

Watch across processes: after each change the store announces ``kind id`` on the channel
``stigmer_changes`` (NOTIFY, from a publisher thread, so a write never waits for it); every
process LISTENs and hands other processes' changes to its local listeners. A notification lost
while a connection was down costs a watcher at most its periodic recheck.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from loguru import logger
from psycopg_pool import ConnectionPool, PoolTimeout

from stigmer.errors import DatabaseError, DatabaseUnavailableError

from . import pg_schema
from .sql import Cursor

__all__ = ["CHANNEL", "PgConnection", "PgDatabase", "PgLease", "redact"]

# The pool logs every failed connection attempt at WARNING through `logging`; the database's
# availability is logged here, once per change.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

CHANNEL = "stigmer_changes"
#: How long a call waits for a pooled connection (PostgreSQL down: the pool cannot make one).
POOL_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5
#: The listener's reconnect delay after its connection broke.
LISTEN_RETRY = 1.0
#: How often the prober tries the database while it is unavailable.
PROBE_INTERVAL = 0.5
PROBE_CONNECT_TIMEOUT = 2
#: Every connection's bounds: a silent path is given up within ~10 s (TCP keepalives and
#: tcp_user_timeout, instead of libpq's default of about two hours), a statement within 8 s (inside
#: the store activities' 10 s timeout) and a
#: wait for a row lock within 5 s, so a dead peer can neither freeze a caller nor hold a lock for long.
CONNECTION_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
    "options": "-c statement_timeout=8000 -c lock_timeout=5000",
}


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    # Only our constant SQL text reaches here: values are always bound parameters.
    return sql.replace("%", "%%").replace("?", "%s")


# PostgreSQL text cannot hold NUL, and the API stores text byte for byte. NUL travels as U+E000
# U+E002 and U+E000 itself as U+E000 U+E001 (private-use characters), in every text value in and
# out, so any text round-trips and equal texts stay equal in the database.
_ESC = "\ue000"
_ENCODE = str.maketrans({"\x00": _ESC + "\ue002", _ESC: _ESC + "\ue001"})


def _encode(value: Any) -> Any:
    if isinstance(value, str) and ("\x00" in value or _ESC in value):
        return value.translate(_ENCODE)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and _ESC in value:
        return value.replace(_ESC + "\ue002", "\x00").replace(_ESC + "\ue001", _ESC)
    return value


def text_rows(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A psycopg row factory: dict rows with every text value decoded (see _encode)."""
    names = [column.name for column in cursor.description or ()]

    def make(values: Sequence[Any]) -> dict[str, Any]:
        return {name: _decode(value) for name, value in zip(names, values, strict=True)}

    return make


class PgConnection:
    """A psycopg connection as the table modules see it (sql.Connection): ``?`` placeholders, dict rows."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(_pg_sql(sql), tuple(_encode(value) for value in parameters))


class PgDatabase:
    """A PostgreSQL database shared by any number of stigmer processes."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.path = redact(url)  # what messages call it
        self.token = uuid.uuid4().hex  # tells this process's announcements from the others'
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=POOL_TIMEOUT,
            kwargs={
                "row_factory": text_rows,
                "connect_timeout": CONNECT_TIMEOUT,
                "application_name": "stigmer",
                **CONNECTION_OPTIONS,
            },
            check=ConnectionPool.check_connection,
            name="stigmer",
        )
        self._closed = False
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._publisher: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._prober: threading.Thread | None = None
        self._probing = False  # under _state_lock: a prober runs (cleared as it reports success)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._state_lock = threading.Lock()
        self._available = False
        self._schema_ready = False
        self._why = "not connected yet"
        self._watchers: list[Callable[[bool], None]] = []

    @classmethod
    def open(cls, url: str) -> PgDatabase:
        """Connect and create, check or migrate the schema under an advisory lock.

        PostgreSQL unreachable: the database is returned unavailable (store calls answer
        DatabaseUnavailableError) and the schema is prepared as soon as it answers. Any other
        problem (a schema we must not touch, a read-only role, a wrong password) raises.
        """
        db = cls(url)
        db._pool.open(wait=False)
        try:
            db._prepare()
        except DatabaseUnavailableError as err:
            logger.warning(
                "PostgreSQL is not reachable yet ({}); serving anyway, retrying every {:g} s", err, PROBE_INTERVAL
            )
            db._mark_down(str(err))
        except BaseException:
            db._pool.close()
            raise
        return db

    def _prepare(self) -> None:
        try:
            # A connection of its own, not the pool's: a refused or unknown server answers at once
            # instead of after the pool's timeout.
            with (
                psycopg.connect(
                    self.url, connect_timeout=CONNECT_TIMEOUT, row_factory=text_rows, **CONNECTION_OPTIONS
                ) as conn,
                conn.transaction(),
            ):
                pg_schema.ensure_schema(PgConnection(conn), where=self.path)
        except psycopg.OperationalError as exc:
            if _is_configuration(exc):
                raise DatabaseError(_configuration_advice(exc, self.path)) from exc
            raise DatabaseUnavailableError(f"database unavailable: {_one_line(exc)}") from exc
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction) as exc:
            raise DatabaseError(
                f"the role in STIGMER_DATABASE_URL may not change {self.path} ({_one_line(exc)}): stigmer needs a "
                "role that can create tables and write them (e.g. the database's owner)"
            ) from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"could not prepare {self.path}: {_one_line(exc)}") from exc
        with self._state_lock:
            self._schema_ready = True
            self._set_available(True, "")

    # -- availability -------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available

    def on_availability(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(available)`` on every change (from a background thread)."""
        self._watchers.append(fn)

    def _set_available(self, value: bool, why: str) -> None:
        # Under _state_lock.
        changed = value != self._available
        self._available, self._why = value, why
        if value:
            self._probing = False
        if changed:
            if value:
                logger.info("✅ Database {} is available", self.path)
            for fn in list(self._watchers):
                try:
                    fn(value)
                except Exception:
                    logger.exception("Database availability watcher {!r} failed", fn)

    def _mark_down(self, why: str) -> None:
        with self._state_lock:
            if self._closed:
                return
            if self._available:
                logger.warning("Database {} is unavailable: {}", self.path, why)
            self._set_available(False, why)
            if not self._probing:
                self._probing = True
                self._prober = threading.Thread(target=self._probe, name="stigmer-pg-probe", daemon=True)
                self._prober.start()

    def _reachable(self) -> None:
        """One fresh connection and a round trip, or psycopg.Error."""
        with psycopg.connect(
            self.url, connect_timeout=PROBE_CONNECT_TIMEOUT, autocommit=True, **CONNECTION_OPTIONS
        ) as conn:
            conn.execute("SELECT 1")

    def _probe(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL):
            try:
                self._reachable()
                if self._schema_ready:
                    with self._state_lock:
                        self._set_available(True, "")
                else:
                    self._prepare()
                return
            except Exception as exc:
                with self._state_lock:
                    self._why = _one_line(exc)

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def read(self, doing: str) -> Iterator[PgConnection]:
        with self._transaction(doing) as conn:
            yield conn

    @contextmanager
    def write(self, doing: str) -> Iterator[PgConnection]:
        with self._transaction(doing) as conn:
            yield conn

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[PgConnection]:
        if self._closed:
            raise DatabaseError(f"the store for {self.path} is closed; open it again with Store.open().")
        if not self._available:
            raise DatabaseUnavailableError(
                f"database unavailable: could not {doing}: {self.path} is not reachable ({self._why}); "
                "retry later, stigmer reconnects by itself"
            )
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield PgConnection(conn)
        except PoolTimeout as exc:
            # Every pooled connection busy, or none can be made: only the second is an outage.
            try:
                self._reachable()
            except psycopg.Error as down:
                self._mark_down(_one_line(down))
                raise DatabaseUnavailableError(
                    f"database unavailable: could not {doing}: no connection to {self.path} ({_one_line(down)}). "
                    "Check that PostgreSQL is running and reachable; stigmer reconnects by itself."
                ) from exc
            raise DatabaseUnavailableError(
                f"database busy: could not {doing}: all connections to {self.path} stayed in use for "
                f"{POOL_TIMEOUT:g} s; retry later"
            ) from exc
        except psycopg.Error as exc:
            if not _is_unreachable(exc):
                raise DatabaseError(f"could not {doing}: database error on {self.path} ({_one_line(exc)}).") from exc
            self._mark_down(_one_line(exc))
            raise DatabaseUnavailableError(
                f"database unavailable: could not {doing}: {_one_line(exc)}. Retry; stigmer reconnects by itself."
            ) from exc

    # -- change notifications -----------------------------------------------------------------

    def announce(self, kind: str, id: str) -> None:
        """Tell the other processes (asynchronously; a lost announcement costs a watcher one recheck)."""
        if not self._closed:
            self._outbox.put(f"{self.token} {kind} {id}")

    def subscribe(self, deliver: Callable[[str, str], None]) -> None:
        """Start the publisher and the listener; ``deliver(kind, id)`` gets the other processes' changes."""
        self._publisher = threading.Thread(target=self._publish, name="stigmer-pg-notify", daemon=True)
        self._listener = threading.Thread(target=self._listen, args=(deliver,), name="stigmer-pg-listen", daemon=True)
        self._publisher.start()
        self._listener.start()
        if self._available:  # hear the others from the first change on, not from whenever LISTEN lands
            self._listening.wait(timeout=CONNECT_TIMEOUT)

    def _publish(self) -> None:
        while True:
            payload = self._outbox.get()
            if payload is None:
                return
            batch = [payload]
            while True:  # whatever queued meanwhile goes in the same round trip
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._outbox.put(None)
                    break
                batch.append(more)
            try:
                # One transaction (the pool commits it on exit): the notifications go out at its commit.
                with self._pool.connection(timeout=POOL_TIMEOUT) as conn, conn.cursor() as cur:
                    cur.executemany("SELECT pg_notify(%s, %s)", [(CHANNEL, p) for p in batch])
            except Exception as exc:
                logger.debug("Could not announce {} change(s) to other processes: {}", len(batch), exc)

    def _listen(self, deliver: Callable[[str, str], None]) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **CONNECTION_OPTIONS
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=100):
                            token, _, rest = note.payload.partition(" ")
                            kind, _, id = rest.partition(" ")
                            if token != self.token and kind and id:
                                deliver(kind, id)
            except Exception as exc:
                logger.debug("Change listener on {} lost its connection ({}); reconnecting", self.path, exc)
                self._stop.wait(LISTEN_RETRY)

    def lease(self, key: int) -> PgLease:
        """A session advisory lock on a connection of its own: held by one process at a time."""
        return PgLease(self.url, key)

    # -- closing ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._outbox.put(None)
        for thread in (self._publisher, self._listener, self._prober):
            if thread is not None:
                thread.join(timeout=5)
        self._pool.close(timeout=5)


#: SQLSTATEs that mean "the server went away" (connection exceptions; shutting down; starting up).
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03")


def _is_unreachable(exc: psycopg.Error) -> bool:
    """No answer from the server (as opposed to an answer refusing the statement)."""
    if exc.sqlstate is None:  # failed client-side: the connection broke or never came up
        return isinstance(exc, psycopg.OperationalError)
    return exc.sqlstate.startswith(_UNREACHABLE_STATES)


_CONFIGURATION_HINTS = (
    "password authentication failed",
    "no password supplied",
    'database "',  # database "x" does not exist
    'role "',  # role "x" does not exist
)


def _is_configuration(exc: psycopg.OperationalError) -> bool:
    """A refusal that waiting will not fix (wrong password, no such database or role) -- not one
    that passes (too many connections, the server starting or shutting down)."""
    text = str(exc).lower()
    if "too many connections" in text or "reserved for" in text:
        return False
    return any(hint in text for hint in _CONFIGURATION_HINTS) and ("password" in text or "does not exist" in text)


def _configuration_advice(exc: psycopg.OperationalError, where: str) -> str:
    text = str(exc).lower()
    if "password" in text:
        return f"PostgreSQL refused the credentials in STIGMER_DATABASE_URL for {where}: fix the user or password"
    if "database" in text and "does not exist" in text:
        return f"the database in STIGMER_DATABASE_URL does not exist ({where}): create it (CREATE DATABASE ...) first"
    return f"PostgreSQL refused STIGMER_DATABASE_URL ({where}): {_one_line(exc)}"


class PgLease:
    """``pg_try_advisory_lock`` held on a dedicated connection: whoever holds it leads (one
    reconciler among many servers). The lock goes with the connection, so a holder that dies
    (or loses the database) hands it over: the next ``acquire()`` elsewhere gets it."""

    def __init__(self, url: str, key: int) -> None:
        self._url = url
        self._key = key
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """True while this process holds the lock (taking it if free). Blocks for a round trip."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._held = False
                    self._conn = psycopg.connect(
                        self._url, autocommit=True, connect_timeout=PROBE_CONNECT_TIMEOUT, **CONNECTION_OPTIONS
                    )
                if self._held:
                    self._conn.execute("SELECT 1")  # still connected: still held
                    return True
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                self._held = bool(row and row[0])
            except psycopg.Error:
                self._drop()
            return self._held

    def release(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
