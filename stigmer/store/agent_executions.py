"""SQL for agent executions. Every function runs on a connection already inside the caller's
transaction (see ``Database``); transitions return ``(record, changed)`` so the store notifies
listeners only for real changes.

Transitions read, check the phase guard, then write -- all under ``BEGIN IMMEDIATE``, so no
other writer (thread or process) can slip in between. The UPDATE repeats the guard anyway, so a
mistake in the Python check can never move a terminal record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .codec import agent_execution_from_row, dump_json, messages_to_json
from .models import AgentExecution, Message, Phase
from .requests import RequestKey
from .sql import INTEGRITY_ERRORS, Connection, refused_insert
from .table import TEMPORAL_CANCEL_REASON, TEMPORAL_CANCELLER, UNFINISHED, ExecutionTable, cancelled_error

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
    "temporal_workflow_id",
    "unfinished",
    "withdraw_cancel",
]

PREFIX = "aex"
USER_ROLE = "user"


def temporal_workflow_id(execution_id: str) -> str:
    return f"stigmer/agent-execution/invoke/{execution_id}"


def _check_env(runtime_env: Mapping[str, str]) -> dict[str, str]:
    # JSON would happily store numbers, which would then come back as non-str values.
    for key, value in runtime_env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"runtime_env must map str to str, got {key!r}: {value!r}")
    return dict(runtime_env)


def insert(
    conn: Connection,
    *,
    id: str,
    agent: str,
    message: str,
    runtime_env: Mapping[str, str],
    parent_id: str,
    at: float,
    request: RequestKey | None = None,
) -> AgentExecution:
    env = _check_env(runtime_env)
    messages = (Message(role=USER_ROLE, text=message, at=at),)
    try:
        conn.execute(
            "INSERT INTO agent_executions (id, agent, message, runtime_env, phase, messages, error,"
            " created_at, started_at, completed_at, workflow_id, parent_id, version, request_id, request_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, '', ?, NULL, NULL, ?, ?, 1, ?, ?)",
            (
                id,
                agent,
                message,
                dump_json(env),
                Phase.PENDING.value,
                messages_to_json(messages),
                at,
                temporal_workflow_id(id),
                parent_id,
                None if request is None else request.id,
                "" if request is None else request.digest,
            ),
        )
    except INTEGRITY_ERRORS as exc:
        raise refused_insert(
            exc, request_id=None if request is None else request.id, message=f"agent execution {id} already exists"
        ) from exc
    return get(conn, id)


_TABLE = ExecutionTable("agent_executions", "agent execution", PREFIX, agent_execution_from_row)
get = _TABLE.get
list_page = _TABLE.list_page
delete = _TABLE.delete
unfinished = _TABLE.unfinished
count_by_phase = _TABLE.count_by_phase
mark_started = _TABLE.mark_started
delete_finished = _TABLE.delete_finished
find_request = _TABLE.find_request
forget = _TABLE.forget
claim = _TABLE.claim
request_cancel = _TABLE.request_cancel
withdraw_cancel = _TABLE.withdraw_cancel


def cancel(conn: Connection, id: str, *, at: float, pending_only: bool = False) -> tuple[AgentExecution, bool]:
    """Unfinished -> CANCELLED, by whoever asked: its own cancel request, else its workflow
    execution's (a step cancelled with its parent), else Temporal (cancelled there directly)."""
    current = get(conn, id, lock=True)
    if current.phase.terminal or (pending_only and current.phase is not Phase.PENDING):
        return current, False
    if current.cancel_requested_at is not None:
        by, reason = current.cancelled_by, current.cancel_reason
        error = cancelled_error(by, reason)
    else:
        parent = None
        if current.parent_id:
            parent = conn.execute(
                "SELECT cancelled_by, cancel_reason FROM workflow_executions"
                " WHERE id = ? AND cancel_requested_at IS NOT NULL",
                (current.parent_id,),
            ).fetchone()
        if parent is not None:
            by, reason = parent["cancelled_by"], parent["cancel_reason"]
            error = f"cancelled with workflow execution {current.parent_id} ({cancelled_error(by, reason)})"
        else:
            by, reason = TEMPORAL_CANCELLER, TEMPORAL_CANCEL_REASON
            error = cancelled_error(by, reason)
    return _TABLE.finish_cancelled(conn, current, by=by, reason=reason, error=error, at=at)


def complete(conn: Connection, id: str, *, replies: Sequence[Message], at: float) -> tuple[AgentExecution, bool]:
    current = get(conn, id, lock=True)
    if current.phase.terminal:
        return current, False
    messages = (*current.messages, *replies)
    # started_at is filled in if the "started" activity never ran, so durations stay computable.
    cursor = conn.execute(
        "UPDATE agent_executions SET phase = ?, messages = ?, started_at = COALESCE(started_at, ?),"
        " completed_at = ?, version = version + 1 WHERE id = ? AND phase IN (?, ?)",
        (Phase.COMPLETED.value, messages_to_json(messages), at, at, id, *UNFINISHED),
    )
    return get(conn, id), cursor.rowcount == 1


def fail(conn: Connection, id: str, *, error: str, at: float) -> tuple[AgentExecution, bool]:
    current = get(conn, id, lock=True)
    if current.phase.terminal:
        return current, False
    cursor = conn.execute(
        "UPDATE agent_executions SET phase = ?, error = ?, completed_at = ?, version = version + 1"
        " WHERE id = ? AND phase IN (?, ?)",
        (Phase.FAILED.value, error, at, id, *UNFINISHED),
    )
    return get(conn, id), cursor.rowcount == 1
