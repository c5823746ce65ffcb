"""SQL for workflow executions. Same shape as ``agent_executions``: runs inside the caller's
transaction, transitions return ``(record, changed)`` and are guarded so repeats change nothing.

A terminal execution is frozen: late task updates (e.g. an activity retried after the workflow
already failed) are ignored rather than rewriting history.
"""

from __future__ import annotations

from collections.abc import Sequence

from stigmer.errors import NotFoundError

from . import agent_executions
from .codec import tasks_to_json, workflow_execution_from_row
from .models import Phase, TaskState, TaskStatus, Workflow, WorkflowExecution
from .requests import RequestKey
from .sql import INTEGRITY_ERRORS, Connection, refused_insert
from .table import TEMPORAL_CANCEL_REASON, TEMPORAL_CANCELLER, TERMINAL, UNFINISHED, ExecutionTable, cancelled_error

__all__ = [
    "PREFIX",
    "cancel",
    "claim",
    "complete",
    "count_by_phase",
    "delete",
    "delete_finished",
    "fail",
    "find_request",
    "forget",
    "get",
    "insert",
    "list_page",
    "mark_started",
    "request_cancel",
    "set_task_status",
    "temporal_workflow_id",
    "unfinished",
    "withdraw_cancel",
]

PREFIX = "wex"


def temporal_workflow_id(execution_id: str) -> str:
    return f"stigmer/workflow-execution/invoke/{execution_id}"


def insert(
    conn: Connection,
    *,
    id: str,
    workflow: Workflow,
    input: str,
    task_names_kinds: Sequence[tuple[str, str]],
    at: float,
    request: RequestKey | None = None,
) -> WorkflowExecution:
    names = [name for name, _ in task_names_kinds]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        # set_task_status addresses tasks by name, so a repeated name would be ambiguous.
        raise ValueError(f"task names must be unique within a workflow execution, repeated: {duplicates}")
    tasks = tuple(
        TaskState(name=name, kind=kind, status=TaskStatus.PENDING, output="", error="")
        for name, kind in task_names_kinds
    )
    try:
        conn.execute(
            "INSERT INTO workflow_executions (id, workflow_id, workflow_name, input, phase, tasks, output,"
            " error, created_at, started_at, completed_at, temporal_workflow_id, version, request_id, request_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, '', '', ?, NULL, NULL, ?, 1, ?, ?)",
            (
                id,
                workflow.id,
                workflow.name,
                input,
                Phase.PENDING.value,
                tasks_to_json(tasks),
                at,
                temporal_workflow_id(id),
                None if request is None else request.id,
                "" if request is None else request.digest,
            ),
        )
    except INTEGRITY_ERRORS as exc:
        raise refused_insert(
            exc, request_id=None if request is None else request.id, message=f"workflow execution {id} already exists"
        ) from exc
    return get(conn, id)


_TABLE = ExecutionTable("workflow_executions", "workflow execution", PREFIX, workflow_execution_from_row)
get = _TABLE.get
list_page = _TABLE.list_page
delete = _TABLE.delete
unfinished = _TABLE.unfinished
count_by_phase = _TABLE.count_by_phase
mark_started = _TABLE.mark_started
find_request = _TABLE.find_request
forget = _TABLE.forget
claim = _TABLE.claim
request_cancel = _TABLE.request_cancel
withdraw_cancel = _TABLE.withdraw_cancel


def cancel(
    conn: Connection, id: str, *, at: float, pending_only: bool = False
) -> tuple[WorkflowExecution, bool, list[str]]:
    """Unfinished -> CANCELLED: the running task CANCELLED, the tasks not reached SKIPPED, and its
    unfinished step agent executions cancelled with it; (record, changed, ids of steps changed)."""
    current = get(conn, id, lock=True)
    if current.phase.terminal or (pending_only and current.phase is not Phase.PENDING):
        return current, False, []
    if current.cancel_requested_at is not None:
        by, reason = current.cancelled_by, current.cancel_reason
    else:
        by, reason = TEMPORAL_CANCELLER, TEMPORAL_CANCEL_REASON
    stopped = {TaskStatus.RUNNING: TaskStatus.CANCELLED, TaskStatus.PENDING: TaskStatus.SKIPPED}
    tasks = [
        TaskState(name=t.name, kind=t.kind, status=stopped[t.status], output=t.output, error=t.error)
        if t.status in stopped
        else t
        for t in current.tasks
    ]
    record, changed = _TABLE.finish_cancelled(
        conn, current, by=by, reason=reason, error=cancelled_error(by, reason), at=at, tasks=tasks_to_json(tasks)
    )
    steps: list[str] = []
    if changed:
        rows = conn.execute(
            "SELECT id FROM agent_executions WHERE parent_id = ? AND phase IN (?, ?)", (id, *UNFINISHED)
        ).fetchall()
        steps = [row["id"] for row in rows if agent_executions.cancel(conn, row["id"], at=at)[1]]
    return record, changed, steps


def delete_finished(conn: Connection, id: str) -> tuple[WorkflowExecution, list[str]]:
    """Delete a finished execution and its finished steps; (the record as it was, step ids deleted)."""
    record = _TABLE.delete_finished(conn, id)
    placeholders = ", ".join("?" * len(TERMINAL))
    rows = conn.execute(
        f"SELECT id FROM agent_executions WHERE parent_id = ? AND phase IN ({placeholders})", (id, *TERMINAL)
    ).fetchall()
    steps = [row["id"] for row in rows]
    for step in steps:
        agent_executions.delete(conn, step)
    return record, steps


def count_unfinished_of(conn: Connection, workflow_id: str) -> tuple[int, str]:
    """(how many executions of the workflow are unfinished, the id of the oldest, or "")."""
    row = conn.execute(
        "SELECT COUNT(*) AS n, MIN(id) AS oldest FROM workflow_executions WHERE workflow_id = ? AND phase IN (?, ?)",
        (workflow_id, *UNFINISHED),
    ).fetchone()
    return int(row["n"]), row["oldest"] or ""


def set_task_status(
    conn: Connection, id: str, task: str, status: TaskStatus, *, output: str, error: str
) -> tuple[WorkflowExecution, bool]:
    current = get(conn, id, lock=True)
    status = TaskStatus(status)
    index = next((i for i, t in enumerate(current.tasks) if t.name == task), None)
    if index is None:
        raise NotFoundError("task", repr(task), message=f"workflow execution {id} has no task {task!r}")
    old = current.tasks[index]
    # Only forward moves count: a repeat, a step back (RUNNING -> PENDING) or any change to a
    # finished task is a no-op, which is what makes activity retries harmless.
    if current.phase.terminal or status.rank <= old.status.rank:
        return current, False
    tasks = list(current.tasks)
    tasks[index] = TaskState(name=old.name, kind=old.kind, status=status, output=output, error=error)
    cursor = conn.execute(
        "UPDATE workflow_executions SET tasks = ?, version = version + 1 WHERE id = ? AND version = ?",
        (tasks_to_json(tasks), id, current.version),
    )
    return get(conn, id), cursor.rowcount == 1


def complete(conn: Connection, id: str, *, output: str, at: float) -> tuple[WorkflowExecution, bool]:
    current = get(conn, id, lock=True)
    if current.phase.terminal:
        return current, False
    cursor = conn.execute(
        "UPDATE workflow_executions SET phase = ?, output = ?, started_at = COALESCE(started_at, ?),"
        " completed_at = ?, version = version + 1 WHERE id = ? AND phase IN (?, ?)",
        (Phase.COMPLETED.value, output, at, at, id, *UNFINISHED),
    )
    return get(conn, id), cursor.rowcount == 1


def fail(conn: Connection, id: str, *, error: str, at: float) -> tuple[WorkflowExecution, bool]:
    current = get(conn, id, lock=True)
    if current.phase.terminal:
        return current, False
    cursor = conn.execute(
        "UPDATE workflow_executions SET phase = ?, error = ?, completed_at = ?, version = version + 1"
        " WHERE id = ? AND phase IN (?, ?)",
        (Phase.FAILED.value, error, at, id, *UNFINISHED),
    )
    return get(conn, id), cursor.rowcount == 1
