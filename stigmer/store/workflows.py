"""SQL for workflow definitions. Runs inside the caller's transaction (see ``Database``)."""

from __future__ import annotations

from collections.abc import Sequence

from stigmer.errors import FailedPreconditionError, NotFoundError

from .codec import dump_json, workflow_from_row
from .ids import is_valid_id
from .models import Workflow
from .paging import select_page
from .requests import RequestKey, claim
from .sql import INTEGRITY_ERRORS, Connection, for_share, for_update, refused_insert

__all__ = ["PREFIX", "delete", "find_request", "get", "insert", "list_page"]

PREFIX = "wf"


def insert(
    conn: Connection,
    *,
    id: str,
    name: str,
    document: str,
    valid: bool,
    validation_errors: Sequence[str],
    at: float,
    request: RequestKey | None = None,
) -> Workflow:
    if not name:
        raise ValueError("workflow name must not be empty")
    try:
        conn.execute(
            "INSERT INTO workflows (id, name, document, valid, validation_errors, created_at, version,"
            " request_id, request_hash) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (
                id,
                name,
                document,
                int(valid),
                dump_json(list(validation_errors)),
                at,
                None if request is None else request.id,
                "" if request is None else request.digest,
            ),
        )
    except INTEGRITY_ERRORS as exc:
        raise refused_insert(
            exc, request_id=None if request is None else request.id, message=f"a workflow named {name!r} already exists"
        ) from exc
    return get(conn, id)


def get(conn: Connection, id_or_name: str, *, lock: bool = False, share_lock: bool = False) -> Workflow:
    """By id or name; ``lock`` locks the row for a delete, ``share_lock`` against one (PostgreSQL)."""
    row = None
    locking = for_update(conn) if lock else (for_share(conn) if share_lock else "")
    # An id is tried first; a name that happens to look like an id still resolves by name below.
    if is_valid_id(PREFIX, id_or_name):
        row = conn.execute(f"SELECT * FROM workflows WHERE id = ?{locking}", (id_or_name,)).fetchone()
    if row is None:
        row = conn.execute(f"SELECT * FROM workflows WHERE name = ?{locking}", (id_or_name,)).fetchone()
    if row is None:
        raise NotFoundError("workflow", repr(id_or_name))
    return workflow_from_row(row)


def find_request(conn: Connection, key: RequestKey, *, now: float) -> Workflow | None:
    return claim(conn, table="workflows", kind="workflow", key=key, now=now, convert=workflow_from_row)


def delete(conn: Connection, id_or_name: str, *, unfinished: tuple[int, str]) -> Workflow:
    """Delete a workflow (its name is free again) and return it; ``unfinished`` is (count, oldest
    id) of its unfinished executions, read by the caller in this transaction: any refuses it."""
    current = get(conn, id_or_name, lock=True)
    count, oldest = unfinished
    if count:
        raise FailedPreconditionError(
            f"workflow {current.name!r} ({current.id}) has {count} unfinished execution{'s' if count > 1 else ''} "
            f"(oldest {oldest}); wait for them to finish or cancel them, then delete it"
        )
    conn.execute("DELETE FROM workflows WHERE id = ?", (current.id,))
    return current


def list_page(conn: Connection, *, page_size: int, page_token: str) -> tuple[list[Workflow], str]:
    return select_page(
        conn,
        table="workflows",
        prefix=PREFIX,
        page_size=page_size,
        page_token=page_token,
        convert=workflow_from_row,
    )
