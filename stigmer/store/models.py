"""The records the store hands out: immutable snapshots, never live views of the database.

Every record carries ``version``, bumped on each change, so watchers can tell "changed" from
"read again" by comparing one integer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "AgentExecution",
    "Message",
    "Phase",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowExecution",
]


class Phase(enum.StrEnum):
    """Where an execution is in its life. Once terminal, a record never changes again."""

    PENDING = "PENDING"  # stored; the Temporal workflow may not have picked it up yet
    IN_PROGRESS = "IN_PROGRESS"  # an activity reported that work started
    COMPLETED = "COMPLETED"  # finished with a result (terminal)
    FAILED = "FAILED"  # finished with an error (terminal)
    CANCELLED = "CANCELLED"  # stopped on request (terminal)

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_PHASES


_TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})


class TaskStatus(enum.StrEnum):
    """One task of a workflow execution. Statuses only move forward: PENDING < RUNNING < the rest."""

    PENDING = "PENDING"  # not reached yet
    RUNNING = "RUNNING"  # its activity started
    COMPLETED = "COMPLETED"  # produced its output (terminal)
    FAILED = "FAILED"  # raised; the execution usually fails too (terminal)
    SKIPPED = "SKIPPED"  # not run, e.g. its `if` was false (terminal)

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_TASK_STATUSES

    @property
    def rank(self) -> int:
        """Progress order used to refuse going backwards (a terminal status is never replaced)."""
        return 2 if self.terminal else (1 if self is TaskStatus.RUNNING else 0)


_TERMINAL_TASK_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED})


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


@dataclass(frozen=True)
class Workflow:
    id: str  # "wf-" + ULID
    name: str  # unique
    document: str  # the JSON document text, byte for byte as submitted
    valid: bool
    validation_errors: tuple[str, ...]
    created_at: float
    version: int


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
