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

SCHEMA_VERSION = 2

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

_EXECUTION_TABLES = ("agent_executions", "workflow_executions")

# Version 2: request ids (idempotent creates), cancellation, and the indexes of the list filters.
# request_id is NULL when none was given; the partial unique index makes it the create's key.
_V1_TO_V2: tuple[str, ...] = (
    *(
        f"ALTER TABLE {table} ADD COLUMN {column}"
        for table in (*_EXECUTION_TABLES, "workflows")
        for column in ("request_id TEXT", "request_hash TEXT NOT NULL DEFAULT ''")
    ),
    *(
        f"ALTER TABLE {table} ADD COLUMN {column}"
        for table in _EXECUTION_TABLES
        for column in (
            "cancel_requested_at REAL",
            "cancelled_by TEXT NOT NULL DEFAULT ''",
            "cancel_reason TEXT NOT NULL DEFAULT ''",
        )
    ),
    *(
        f"CREATE UNIQUE INDEX {table}_request_id ON {table} (request_id) WHERE request_id IS NOT NULL"
        for table in (*_EXECUTION_TABLES, "workflows")
    ),
    "CREATE INDEX agent_executions_agent_id ON agent_executions (agent, id)",
    "CREATE INDEX agent_executions_parent_id ON agent_executions (parent_id, id)",
    "CREATE INDEX workflow_executions_workflow_id ON workflow_executions (workflow_id, id)",
    "CREATE INDEX workflow_executions_workflow_name ON workflow_executions (workflow_name, id)",
)


def _migrate_v1_to_v2(conn: sqlite3.Connection) -> None:
    for statement in _V1_TO_V2:
        conn.execute(statement)


# MIGRATIONS[n] upgrades a version-n file to version n+1, inside the opening transaction. A new
# file is created at version 1 and migrated forward, so every file goes through the same steps.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_v1_to_v2}


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
    start = found
    if found == 0:
        for statement in _CREATE_V1:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (only_row, version) VALUES (1, 1)")
        start = 1
    for version in range(start, SCHEMA_VERSION):
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise DatabaseError(
                f"{path} has schema version {found} and there is no migration from version {version}. "
                f"Open it with the stigmer release that wrote it, or move it aside."
            )
        migrate(conn)
        conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        if found:
            logger.info("Migrated stigmer database {} to schema version {}", path, version + 1)
    if not found:
        logger.info("Created stigmer database {} (schema version {})", path, SCHEMA_VERSION)
    return found
