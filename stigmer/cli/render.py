"""Plain-text rendering of API records for people (``-o json`` prints the API fields instead)."""

from __future__ import annotations

import json
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from stigmer.api import common_pb2

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
ICONS = {"PENDING": "⏳", "IN_PROGRESS": "⚙️ ", "COMPLETED": "✅", "FAILED": "❌", "CANCELLED": "🚫"}


def phase_name(value: int) -> str:
    return str(common_pb2.ExecutionPhase.Name(value))


def clock(ts: Timestamp, *, has: bool = True) -> str:
    if not has or (ts.seconds == 0 and ts.nanos == 0):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts.ToDatetime().timestamp()))


def short(text: str, width: int = 50) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def cancellation(record: Any) -> list[str]:
    """Who cancelled it and why (or asked to, if it has not stopped yet); nothing if nobody asked."""
    if not record.HasField("cancel_requested_at"):
        return []
    phase = phase_name(record.phase)
    why = f": {record.cancel_reason}" if record.cancel_reason else ""
    asked = clock(record.cancel_requested_at)
    if phase == "CANCELLED":
        return [f"  cancelled by {record.cancelled_by} (asked {asked}){why}"]
    if phase in TERMINAL:
        return [f"  cancel asked by {record.cancelled_by} at {asked}{why}; it finished {phase} first"]
    return [f"  cancel requested by {record.cancelled_by} at {asked}{why}; stopping"]


def _error(record: Any) -> list[str]:
    """The error line, unless it only repeats the cancellation line (``cancelled by WHO: WHY``)."""
    said = f"cancelled by {record.cancelled_by}" + (f": {record.cancel_reason}" if record.cancel_reason else "")
    if not record.error or (phase_name(record.phase) == "CANCELLED" and record.error == said):
        return []
    return [f"  error:  {record.error}"]


def phase_changes(previous: Any | None, current: Any) -> list[str]:
    """The phase line of an agent execution's update, when its phase changed (for ``--wait``)."""
    if previous is not None and previous.phase == current.phase:
        return []
    phase = phase_name(current.phase)
    return [f"{ICONS.get(phase, '')} {phase}"]


def agent_execution(record: Any) -> str:
    phase = phase_name(record.phase)
    lines = [
        f"{record.id}  {ICONS.get(phase, '')} {phase}  agent={record.agent}",
        f"  created {clock(record.created_at)}   started {clock(record.started_at)}   "
        f"completed {clock(record.completed_at)}",
    ]
    if record.parent_id:
        lines.append(f"  part of {record.parent_id}")
    for message in record.messages:
        lines.append(f"  {message.role + ':':7} {message.text}")
    return "\n".join(lines + cancellation(record) + _error(record))


def workflow_execution(record: Any) -> str:
    phase = phase_name(record.phase)
    lines = [
        f"{record.id}  {ICONS.get(phase, '')} {phase}  workflow={record.workflow_name}",
        f"  created {clock(record.created_at)}   started {clock(record.started_at)}   "
        f"completed {clock(record.completed_at)}",
    ]
    for task in record.tasks:
        status = type(task).TaskStatus.Name(task.status)
        detail = task.error or short(task.output, 70)
        lines.append(f"  - {task.name} ({task.kind}): {status}" + (f"  {detail}" if detail else ""))
    if record.output:
        lines.append(f"  output: {short(record.output, 200)}")
    return "\n".join(lines + cancellation(record) + _error(record))


# --- workflows and their executions --------------------------------------------------------------

TASK_ICONS = {
    "PENDING": "⏳",
    "RUNNING": "⚙️ ",
    "COMPLETED": "✅",
    "FAILED": "❌",
    "SKIPPED": "⏭️ ",
    "CANCELLED": "🚫",
}


def task_status_name(task: Any) -> str:
    return str(type(task).TaskStatus.Name(task.status))


def task_line(task: Any) -> str:
    """One task of a workflow execution, e.g. ``✅ compose (set): COMPLETED  {"greeting": "Hi"}``."""
    status = task_status_name(task)
    detail = task.error or short(task.output, 70)
    return f"{TASK_ICONS.get(status, '')} {task.name} ({task.kind}): {status}" + (f"  {detail}" if detail else "")


def execution_changes(previous: Any | None, current: Any) -> list[str]:
    """What changed between two versions of a workflow execution, one line each, for ``--follow``.

    A phase that starts work is printed before the task lines of the same update, a terminal
    phase after them, so the lines read in the order things happened.
    """
    before = {} if previous is None else {t.name: t.status for t in previous.tasks}
    lines = []
    for task in current.tasks:
        if before.get(task.name, type(task).TaskStatus.PENDING) != task.status:
            lines.append(f"  {task_line(task)}")
    if previous is None or previous.phase != current.phase:
        phase = phase_name(current.phase)
        line = f"{ICONS.get(phase, '')} {phase}"
        if phase in TERMINAL:
            lines.append(line)
        else:
            lines.insert(0, line)
    return lines


def document_outline(document: str) -> tuple[str, list[tuple[str, str]]]:
    """(description, [(task name, kind)]) of a stored document, as far as it can be read.

    Invalid documents are stored too, so anything may be missing or of the wrong type here.
    """
    try:
        data = json.loads(document)
    except (ValueError, RecursionError):
        return "", []
    if not isinstance(data, dict):
        return "", []
    description = data.get("description")
    tasks = data.get("tasks")
    outline = [
        (str(t.get("name", "?")), str(t.get("kind", "?")))
        for t in (tasks if isinstance(tasks, list) else [])
        if isinstance(t, dict)
    ]
    return (description if isinstance(description, str) else ""), outline


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def validation_errors(errors: Any) -> list[str]:
    """Validation errors, one per line; each already starts with its JSON path (``tasks[1].seconds: ...``)."""
    return [f"  {error}" for error in errors]


def workflow(record: Any) -> str:
    result = record.validation
    count = len(result.errors)
    state = "✅ valid" if result.valid else f"❌ invalid ({plural(count, 'error')}, cannot be executed)"
    description, outline = document_outline(record.document)
    lines = [f"{record.id}  {record.name}  {state}", f"  created {clock(record.created_at)}"]
    if description:
        lines.append(f"  {short(description, 100)}")
    if outline:
        lines.append("  tasks: " + ", ".join(f"{name} ({kind})" for name, kind in outline))
    if not result.valid:
        lines.append("  errors:")
        lines += [f"  {line}" for line in validation_errors(result.errors)]
    return "\n".join(lines)


def workflow_row(record: Any) -> list[str]:
    _, outline = document_outline(record.document)
    return [
        record.id,
        record.name,
        "yes" if record.validation.valid else "NO",
        str(len(outline)),
        clock(record.created_at),
    ]


def workflow_execution_row(record: Any) -> list[str]:
    done = sum(1 for t in record.tasks if task_status_name(t) == "COMPLETED")
    return [
        record.id,
        phase_name(record.phase),
        record.workflow_name,
        f"{done}/{len(record.tasks)}",
        clock(record.created_at),
    ]
