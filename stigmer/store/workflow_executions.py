"""SQL for workflow executions. Same shape as ``agent_executions``: runs inside the caller's
transaction, transitions return ``(record, changed)`` and are guarded so repeats change nothing.

A terminal execution is frozen: late task updates (e.g. an activity retried after the workflow
already failed) are ignored rather than rewriting history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from stigmer.errors import AlreadyExistsError, NotFoundError

from .codec import tasks_to_json, workflow_execution_from_row
from .models import Phase, TaskState, TaskStatus, Workflow, WorkflowExecution
from .table import UNFINISHED, ExecutionTable

__all__ = [
    "PREFIX",
    "complete",
    "delete",
    "fail",
    "get",
    "insert",
    "list_page",
    "mark_started",
    "set_task_status",
    "temporal_workflow_id",
    "unfinished",
]

PREFIX = "wex"


def temporal_workflow_id(execution_id: str) -> str:
    return f"stigmer/workflow-execution/invoke/{execution_id}"


def insert(
    conn: sqlite3.Connection,
    *,
    id: str,
    workflow: Workflow,
    input: str,
    task_names_kinds: Sequence[tuple[str, str]],
    at: float,
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
            " error, created_at, started_at, completed_at, temporal_workflow_id, version)"
            " VALUES (?, ?, ?, ?, ?, ?, '', '', ?, NULL, NULL, ?, 1)",
            (
                id,
                workflow.id,
                workflow.name,
                input,
                Phase.PENDING.value,
                tasks_to_json(tasks),
                at,
                temporal_workflow_id(id),
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise AlreadyExistsError(f"workflow execution {id} already exists") from exc
    return get(conn, id)


_TABLE = ExecutionTable("workflow_executions", "workflow execution", PREFIX, workflow_execution_from_row)
get = _TABLE.get
list_page = _TABLE.list_page
delete = _TABLE.delete
unfinished = _TABLE.unfinished
mark_started = _TABLE.mark_started


def set_task_status(
    conn: sqlite3.Connection, id: str, task: str, status: TaskStatus, *, output: str, error: str
) -> tuple[WorkflowExecution, bool]:
    current = get(conn, id)
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


def complete(conn: sqlite3.Connection, id: str, *, output: str, at: float) -> tuple[WorkflowExecution, bool]:
    current = get(conn, id)
    if current.phase.terminal:
        return current, False
    cursor = conn.execute(
        "UPDATE workflow_executions SET phase = ?, output = ?, started_at = COALESCE(started_at, ?),"
        " completed_at = ?, version = version + 1 WHERE id = ? AND phase IN (?, ?)",
        (Phase.COMPLETED.value, output, at, at, id, *UNFINISHED),
    )
    return get(conn, id), cursor.rowcount == 1


def fail(conn: sqlite3.Connection, id: str, *, error: str, at: float) -> tuple[WorkflowExecution, bool]:
    current = get(conn, id)
    if current.phase.terminal:
        return current, False
    cursor = conn.execute(
        "UPDATE workflow_executions SET phase = ?, error = ?, completed_at = ?, version = version + 1"
        " WHERE id = ? AND phase IN (?, ?)",
        (Phase.FAILED.value, error, at, id, *UNFINISHED),
    )
    return get(conn, id), cursor.rowcount == 1
