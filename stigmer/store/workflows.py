"""SQL for workflow definitions. Runs inside the caller's transaction (see ``Database``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from stigmer.errors import AlreadyExistsError, NotFoundError

from .codec import dump_json, workflow_from_row
from .ids import is_valid_id
from .models import Workflow
from .paging import select_page

__all__ = ["PREFIX", "get", "insert", "list_page"]

PREFIX = "wf"


def insert(
    conn: sqlite3.Connection,
    *,
    id: str,
    name: str,
    document: str,
    valid: bool,
    validation_errors: Sequence[str],
    at: float,
) -> Workflow:
    if not name:
        raise ValueError("workflow name must not be empty")
    try:
        conn.execute(
            "INSERT INTO workflows (id, name, document, valid, validation_errors, created_at, version)"
            " VALUES (?, ?, ?, ?, ?, ?, 1)",
            (id, name, document, int(valid), dump_json(list(validation_errors)), at),
        )
    except sqlite3.IntegrityError as exc:
        raise AlreadyExistsError(f"a workflow named {name!r} already exists") from exc
    return get(conn, id)


def get(conn: sqlite3.Connection, id_or_name: str) -> Workflow:
    row = None
    # An id is tried first; a name that happens to look like an id still resolves by name below.
    if is_valid_id(PREFIX, id_or_name):
        row = conn.execute("SELECT * FROM workflows WHERE id = ?", (id_or_name,)).fetchone()
    if row is None:
        row = conn.execute("SELECT * FROM workflows WHERE name = ?", (id_or_name,)).fetchone()
    if row is None:
        raise NotFoundError("workflow", repr(id_or_name))
    return workflow_from_row(row)


def list_page(conn: sqlite3.Connection, *, page_size: int, page_token: str) -> tuple[list[Workflow], str]:
    return select_page(
        conn,
        table="workflows",
        prefix=PREFIX,
        phase=None,
        page_size=page_size,
        page_token=page_token,
        convert=workflow_from_row,
    )
