"""Conversions between database rows / JSON columns and the record dataclasses.

JSON is written with ``ensure_ascii=False`` so text stays readable in the file; ``json`` round
trips every Python ``str`` and ``float`` exactly, which is what "byte for byte" rests on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .models import AgentExecution, Message, Phase, TaskState, TaskStatus, Workflow, WorkflowExecution
from .sql import Row

__all__ = [
    "agent_execution_from_row",
    "dump_json",
    "messages_to_json",
    "tasks_to_json",
    "workflow_execution_from_row",
    "workflow_from_row",
]


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def messages_to_json(messages: Sequence[Message]) -> str:
    return dump_json([{"role": m.role, "text": m.text, "at": m.at} for m in messages])


def tasks_to_json(tasks: Sequence[TaskState]) -> str:
    return dump_json(
        [
            {"name": t.name, "kind": t.kind, "status": t.status.value, "output": t.output, "error": t.error}
            for t in tasks
        ]
    )


def _messages_from_json(text: str) -> tuple[Message, ...]:
    return tuple(Message(role=m["role"], text=m["text"], at=float(m["at"])) for m in json.loads(text))


def _tasks_from_json(text: str) -> tuple[TaskState, ...]:
    return tuple(
        TaskState(
            name=t["name"],
            kind=t["kind"],
            status=TaskStatus(t["status"]),
            output=t["output"],
            error=t["error"],
        )
        for t in json.loads(text)
    )


def _env_from_json(text: str) -> dict[str, str]:
    loaded: Mapping[str, str] = json.loads(text)
    return dict(loaded)


def agent_execution_from_row(row: Row) -> AgentExecution:
    return AgentExecution(
        id=row["id"],
        agent=row["agent"],
        message=row["message"],
        runtime_env=_env_from_json(row["runtime_env"]),
        phase=Phase(row["phase"]),
        messages=_messages_from_json(row["messages"]),
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        workflow_id=row["workflow_id"],
        parent_id=row["parent_id"],
        version=row["version"],
        request_id=row["request_id"] or "",
        cancel_requested_at=row["cancel_requested_at"],
        cancelled_by=row["cancelled_by"],
        cancel_reason=row["cancel_reason"],
    )


def workflow_from_row(row: Row) -> Workflow:
    return Workflow(
        id=row["id"],
        name=row["name"],
        document=row["document"],
        valid=bool(row["valid"]),
        validation_errors=tuple(json.loads(row["validation_errors"])),
        created_at=row["created_at"],
        version=row["version"],
        request_id=row["request_id"] or "",
    )


def workflow_execution_from_row(row: Row) -> WorkflowExecution:
    return WorkflowExecution(
        id=row["id"],
        workflow_id=row["workflow_id"],
        workflow_name=row["workflow_name"],
        input=row["input"],
        phase=Phase(row["phase"]),
        tasks=_tasks_from_json(row["tasks"]),
        output=row["output"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        temporal_workflow_id=row["temporal_workflow_id"],
        version=row["version"],
        request_id=row["request_id"] or "",
        cancel_requested_at=row["cancel_requested_at"],
        cancelled_by=row["cancelled_by"],
        cancel_reason=row["cancel_reason"],
    )
