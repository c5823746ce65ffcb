"""One SQLite connection, its lock, its transactions, and the translation of SQLite failures into
``DatabaseError`` messages an operator can act on.

A single connection shared by threads (``check_same_thread=False``) behind an ``RLock`` keeps the
model simple: every read and every write transaction runs alone, so a transition's
read-check-write needs no retry loop. WAL lets other processes (e.g. ``sqlite3`` in a shell)
read while we write; ``BEGIN IMMEDIATE`` takes the write lock up front so two processes sharing a
data dir cannot interleave inside one transition.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from loguru import logger

from stigmer.errors import DatabaseError, StoreFullError

from .schema import ensure_schema, inspect_schema

__all__ = ["DB_FILE_NAME", "AlwaysHeld", "Database", "store_error"]

DB_FILE_NAME = "stigmer.db"
BUSY_TIMEOUT_MS = 5_000


def store_error(exc: sqlite3.Error, *, path: Path, doing: str) -> DatabaseError:
    """A DatabaseError naming the file, what failed, and what the operator should do about it."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # primary result code, extended bits dropped
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return DatabaseError(
            f"{path} is not a usable stigmer database ({exc}): it is corrupt, truncated, or not a SQLite "
            f"file. Stop stigmer, move it aside together with any {path.name}-wal and {path.name}-shm "
            f"files (e.g. `mv {path} {path}.broken`), then start again to create a fresh database. "
            f"stigmer never resets it on its own."
        )
    if code == sqlite3.SQLITE_FULL:
        return StoreFullError(
            f"could not {doing}: the disk holding {path} is full ({exc}). Free some space and retry; "
            f"the change was rolled back, nothing was half-written."
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return DatabaseError(
            f"could not {doing}: {path} cannot be opened for writing ({exc}). Make both the file "
            f"and the data dir {path.parent} writable by this user (SQLite also creates {path.name}-wal "
            f"and {path.name}-shm there), or point STIGMER_DATA_DIR at a writable directory."
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return DatabaseError(
            f"could not {doing}: {path} stayed locked for {BUSY_TIMEOUT_MS} ms ({exc}). Is another stigmer "
            f"server using the same data dir? Stop it or use a different STIGMER_DATA_DIR."
        )
    if code == sqlite3.SQLITE_IOERR:
        return DatabaseError(f"could not {doing}: I/O error on {path} ({exc}). Check the disk and the file system.")
    return DatabaseError(f"could not {doing}: database error on {path} ({exc}).")


class AlwaysHeld:
    """The lease of a single-process store."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


class Database:
    """The open database file. Use ``read()``/``write()``; both serialize on one lock."""

    def __init__(self, *, conn: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()

    @classmethod
    def open(cls, data_dir: Path, *, name: str = DB_FILE_NAME) -> Database:
        """Open (creating if needed) ``<data_dir>/<name>``; refuse anything we cannot trust."""
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"could not create the data dir {data_dir}: {exc.strerror or exc}. Create it with write "
                f"permission for this user, or point STIGMER_DATA_DIR at a writable directory."
            ) from exc
        path = data_dir / name
        if path.exists() and not path.is_file():
            raise DatabaseError(f"{path} exists but is not a file. Move it aside so the database can be created.")
        try:
            # isolation_level=None: no implicit BEGINs; every transaction below is explicit.
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise store_error(exc, path=path, doing="open the database") from exc
        try:
            cls._prepare(conn, path=path)
        except BaseException:
            conn.close()
            raise
        return cls(conn=conn, path=path)

    @staticmethod
    def _prepare(conn: sqlite3.Connection, *, path: Path) -> None:
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Everything up to the WAL switch only reads, so a file we refuse is left untouched.
            # quick_check is the first read of the header (a foreign or truncated file fails
            # here) and also finds a damaged page deep in the file that would otherwise only
            # surface on the request that touches it; it takes milliseconds at our sizes.
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise DatabaseError(
                    f"{path} failed SQLite's integrity check ({'; '.join(problems)}). Stop stigmer, move it "
                    f"aside together with any {path.name}-wal and {path.name}-shm files (e.g. "
                    f"`mv {path} {path}.broken`), then start again to create a fresh database."
                )
            inspect_schema(conn, path=path)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("SQLite refused WAL mode for {} (journal_mode={}); continuing", path, mode)
            # NORMAL is durable across process crashes in WAL mode; only power loss can drop
            # the last commits, which the reconciler tolerates.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                ensure_schema(conn, path=path)
                # A real write, so that a read-only file or directory is reported at startup
                # rather than on the first request that tries to change something.
                conn.execute("UPDATE schema_version SET version = version")
                conn.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise store_error(exc, path=path, doing="open the database") from exc

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseError(f"the store for {self.path} is closed; open it again with Store.open().")
        return self._conn

    @contextmanager
    def read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """Run queries under the lock; SQLite failures become DatabaseError."""
        with self._lock:
            conn = self._require_open()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise store_error(exc, path=self.path, doing=doing) from exc

    @contextmanager
    def write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing transaction: committed if the block returns, rolled back if it raises."""
        with self._lock:
            conn = self._require_open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (e.g. after SQLITE_FULL); that is fine.
                    if conn.in_transaction:
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise store_error(exc, path=self.path, doing=doing) from exc

    def announce(self, kind: str, id: str) -> None:
        """One process per file: its listeners are all local (see StoreBase)."""

    def subscribe(self, deliver: Callable[[str, str], None]) -> None:
        """Nothing to deliver: no other process writes this file while we hold it."""

    @property
    def available(self) -> bool:
        return True

    def lease(self, key: int) -> AlwaysHeld:
        """One process per file: it always leads."""
        return AlwaysHeld()

    def on_availability(self, fn: Callable[[bool], None]) -> None:
        """Never changes: a problem with the file is an error of the call that met it."""

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
