"""The records the store hands out: immutable snapshots, never live views of the database.

Every record carries ``version``, bumped on each change, so watchers can tell "changed" from
"read again" by comparing one integer.
"""

from __future__ import annotations

from dataclasses import dataclass

from stigmer.phases import Phase, TaskStatus

__all__ = [
    "AgentExecution",
    "Message",
    "Phase",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowExecution",
]


@dataclass(frozen=True)
class Message:
    role: str  # "user" for the submitted message; the agent's own role for replies
    text: str
    at: float  # unix seconds


@dataclass(frozen=True)
class AgentExecution:
    id: str  # "aex-" + 26-char ULID
    agent: str
    message: str
    runtime_env: dict[str, str]
    phase: Phase
    messages: tuple[Message, ...]  # the user's message first, then the agent's replies
    error: str  # "" unless FAILED/CANCELLED
    created_at: float
    started_at: float | None
    completed_at: float | None
    workflow_id: str  # Temporal workflow id, "stigmer/agent-execution/invoke/<id>"
    parent_id: str  # "" or the wex- id when started as a workflow step
    version: int
    request_id: str = ""  # the create's request_id (a UUID), "" if none was given
    cancel_requested_at: float | None = None  # when a cancel was accepted
    cancelled_by: str = ""  # who asked ("temporal" if its workflow was cancelled there)
    cancel_reason: str = ""


@dataclass(frozen=True)
class Workflow:
    id: str  # "wf-" + ULID
    name: str  # unique
    document: str  # the JSON document text, byte for byte as submitted
    valid: bool
    validation_errors: tuple[str, ...]
    created_at: float
    version: int
    request_id: str = ""


@dataclass(frozen=True)
class TaskState:
    name: str
    kind: str
    status: TaskStatus
    output: str  # JSON text, "" if none
    error: str


@dataclass(frozen=True)
class WorkflowExecution:
    id: str  # "wex-" + ULID
    workflow_id: str  # wf- id
    workflow_name: str
    input: str  # JSON text
    phase: Phase
    tasks: tuple[TaskState, ...]  # one per task of the workflow, in document order
    output: str  # JSON text of the final values, "" until COMPLETED
    error: str
    created_at: float
    started_at: float | None
    completed_at: float | None
    temporal_workflow_id: str  # "stigmer/workflow-execution/invoke/<id>"
    version: int
    request_id: str = ""
    cancel_requested_at: float | None = None
    cancelled_by: str = ""
    cancel_reason: str = ""
