"""The database schema, its version, and the hook for migrating older files forward.

The schema version lives in its own one-row table (not ``PRAGMA user_version``) so that it is
visible to anyone opening the file with the ``sqlite3`` shell. A file without that table is not
ours; a file with a higher version was written by a newer stigmer. Both are refused, never reset.

Structured fields (runtime_env, messages, validation_errors, tasks) are JSON text columns: they
are always read and written whole, and JSON keeps the file readable with standard tools.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from stigmer.errors import DatabaseError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "ensure_schema", "inspect_schema"]

SCHEMA_VERSION = 1

# Statements for a fresh file, run one at a time inside the caller's transaction (executescript
# would commit first, and a half-created schema must never be left behind).
_CREATE_V1: tuple[str, ...] = (
    """CREATE TABLE schema_version (
        only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE agent_executions (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        message TEXT NOT NULL,
        runtime_env TEXT NOT NULL,       -- JSON object of string -> string
        phase TEXT NOT NULL,
        messages TEXT NOT NULL,          -- JSON array of {role, text, at}
        error TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        completed_at REAL,
        workflow_id TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        version INTEGER NOT NULL
    )""",
    # Listing filters by phase and pages by id; the reconciler scans unfinished phases.
    "CREATE INDEX agent_executions_phase_id ON agent_executions (phase, id)",
    """CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        document TEXT NOT NULL,
        valid INTEGER NOT NULL,
        validation_errors TEXT NOT NULL, -- JSON array of strings
        created_at REAL NOT NULL,
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE workflow_executions (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        workflow_name TEXT NOT NULL,
        input TEXT NOT NULL,
        phase TEXT NOT NULL,
        tasks TEXT NOT NULL,             -- JSON array of {name, kind, status, output, error}
        output TEXT NOT NULL,
        error TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        completed_at REAL,
        temporal_workflow_id TEXT NOT NULL,
        version INTEGER NOT NULL
    )""",
    "CREATE INDEX workflow_executions_phase_id ON workflow_executions (phase, id)",
)

# MIGRATIONS[n] upgrades a version-n file to version n+1, inside the opening transaction.
# Empty while there is only version 1; add entries here (and bump SCHEMA_VERSION) to evolve.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def inspect_schema(conn: sqlite3.Connection, *, path: Path) -> int:
    """The file's schema version (0 for an empty file), or DatabaseError if we must not touch it.

    Only reads, so it can run before anything (even switching to WAL) modifies a foreign file.
    """
    tables = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    }
    if not tables:
        return 0
    if "schema_version" not in tables:
        raise DatabaseError(
            f"{path} is a SQLite database but not a stigmer one (it has no schema_version table). "
            f"Point STIGMER_DATA_DIR elsewhere, or move {path} aside so a fresh database can be created."
        )
    rows = conn.execute("SELECT version FROM schema_version").fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int) or rows[0][0] < 1:
        raise DatabaseError(
            f"{path} has a damaged schema_version table ({[tuple(row) for row in rows][:3]}). "
            f"Move {path} aside (keep it for recovery) and restart to create a fresh database."
        )
    found: int = rows[0][0]
    if found > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} was written by a newer stigmer (schema version {found}; this version understands "
            f"up to {SCHEMA_VERSION}). Upgrade stigmer, or use another data dir; the file was not changed."
        )
    return found


def ensure_schema(conn: sqlite3.Connection, *, path: Path) -> int:
    """Create, check or migrate the schema; return the version found before (0 for a new file).

    Must run inside a write transaction so that creation or migration is all-or-nothing.
    """
    found = inspect_schema(conn, path=path)
    if found == 0:
        for statement in _CREATE_V1:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (only_row, version) VALUES (1, ?)", (SCHEMA_VERSION,))
        logger.info("Created stigmer database {} (schema version {})", path, SCHEMA_VERSION)
        return 0
    for version in range(found, SCHEMA_VERSION):
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise DatabaseError(
                f"{path} has schema version {found} and there is no migration from version {version}. "
                f"Open it with the stigmer release that wrote it, or move it aside."
            )
        migrate(conn)
        conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        logger.info("Migrated stigmer database {} to schema version {}", path, version + 1)
    return found
