"""The PostgreSQL schema: the same tables, columns and indexes as SQLite's (schema.py), in
PostgreSQL's types, created or checked once at start under an advisory lock.

Two servers starting together both take ``pg_advisory_xact_lock`` inside their opening
transaction: the second waits until the first has committed the schema, then finds it. A schema
newer than this code is refused, never touched. PostgreSQL databases start at version 2 (the
first version this backend knows); PG_MIGRATIONS[n] upgrades n to n+1, like schema.MIGRATIONS.
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from stigmer.errors import DatabaseError

from .schema import SCHEMA_VERSION
from .sql import Connection

__all__ = ["LOCK_KEY", "PG_MIGRATIONS", "ensure_schema"]

#: pg_advisory_xact_lock key of schema changes ("stigmer" in ASCII, as a bigint).
LOCK_KEY = 0x73746967_6D6572
FIRST_VERSION = 2

_EXECUTION_COLUMNS = """
        request_id TEXT,
        request_hash TEXT NOT NULL DEFAULT '',
        cancel_requested_at DOUBLE PRECISION,
        cancelled_by TEXT NOT NULL DEFAULT '',
        cancel_reason TEXT NOT NULL DEFAULT ''"""

_CREATE: tuple[str, ...] = (
    """CREATE TABLE schema_version (
        only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
        version INTEGER NOT NULL
    )""",
    f"""CREATE TABLE agent_executions (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        message TEXT NOT NULL,
        runtime_env TEXT NOT NULL,
        phase TEXT NOT NULL,
        messages TEXT NOT NULL,
        error TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        completed_at DOUBLE PRECISION,
        workflow_id TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        version INTEGER NOT NULL,{_EXECUTION_COLUMNS}
    )""",
    """CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        document TEXT NOT NULL,
        valid INTEGER NOT NULL,
        validation_errors TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        version INTEGER NOT NULL,
        request_id TEXT,
        request_hash TEXT NOT NULL DEFAULT ''
    )""",
    f"""CREATE TABLE workflow_executions (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        workflow_name TEXT NOT NULL,
        input TEXT NOT NULL,
        phase TEXT NOT NULL,
        tasks TEXT NOT NULL,
        output TEXT NOT NULL,
        error TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        completed_at DOUBLE PRECISION,
        temporal_workflow_id TEXT NOT NULL,
        version INTEGER NOT NULL,{_EXECUTION_COLUMNS}
    )""",
    # The same lookups as SQLite's indexes serve: phase scans (the reconciler's unfinished ones,
    # List by phase), the request ids (unique), and the list filters. Free text (a name, an agent)
    # can be longer than a B-tree entry may be (~2.7 kB): unique by its md5, found by a hash index.
    "CREATE UNIQUE INDEX workflows_name ON workflows (md5(name))",
    "CREATE INDEX workflows_name_lookup ON workflows USING hash (name)",
    "CREATE INDEX agent_executions_phase_id ON agent_executions (phase, id)",
    "CREATE INDEX workflow_executions_phase_id ON workflow_executions (phase, id)",
    *(
        f"CREATE UNIQUE INDEX {table}_request_id ON {table} (request_id) WHERE request_id IS NOT NULL"
        for table in ("agent_executions", "workflow_executions", "workflows")
    ),
    "CREATE INDEX agent_executions_agent ON agent_executions USING hash (agent)",
    "CREATE INDEX agent_executions_parent_id ON agent_executions USING hash (parent_id)",
    "CREATE INDEX workflow_executions_workflow_id ON workflow_executions (workflow_id, id)",
    "CREATE INDEX workflow_executions_workflow_name ON workflow_executions USING hash (workflow_name)",
)

PG_MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def ensure_schema(conn: Connection, *, where: str) -> int:
    """Create, check or migrate the schema inside the caller's transaction; the version found (0: new)."""
    conn.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
    tables = {
        row["table_name"]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    }
    if not tables:
        for statement in _CREATE:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (only_row, version) VALUES (1, ?)", (SCHEMA_VERSION,))
        logger.info("Created the stigmer schema in {} (schema version {})", where, SCHEMA_VERSION)
        return 0
    if "schema_version" not in tables:
        raise DatabaseError(
            f"{where} already holds tables but no stigmer schema ({', '.join(sorted(tables)[:5])}). "
            "Give stigmer a database of its own (e.g. CREATE DATABASE stigmer) in STIGMER_DATABASE_URL."
        )
    rows = conn.execute("SELECT version FROM schema_version").fetchall()
    if len(rows) != 1:
        raise DatabaseError(f"{where} has a damaged schema_version table ({len(rows)} rows); restore it from a backup.")
    found: int = rows[0]["version"]
    if found > SCHEMA_VERSION:
        raise DatabaseError(
            f"{where} was written by a newer stigmer (schema version {found}; this version understands up to "
            f"{SCHEMA_VERSION}). Upgrade stigmer; the database was not changed."
        )
    for version in range(max(found, FIRST_VERSION), SCHEMA_VERSION):
        PG_MIGRATIONS[version](conn)
        conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        logger.info("Migrated the stigmer schema in {} to version {}", where, version + 1)
    # A real write: a read-only role is reported at start, not on the first request.
    conn.execute("UPDATE schema_version SET version = version")
    return found
