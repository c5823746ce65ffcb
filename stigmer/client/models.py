"""What the client hands out: frozen views of the server's answers, never protobuf messages.

Field names are the API's (docs in stigmer/api/*.proto); times are timezone-aware datetimes,
``None`` when unset; phases and task statuses are the store's enums. Each view keeps the message
it was read from, privately, so that :func:`to_json` gives exactly the API's JSON mapping (what
``stigmer ... -o json`` prints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp

from stigmer.api import agent_execution_pb2, common_pb2, status_pb2, workflow_execution_pb2, workflow_pb2
from stigmer.phases import Phase, TaskStatus


def phase_to_proto(phase: Phase | str) -> common_pb2.ExecutionPhase:
    return common_pb2.ExecutionPhase.Value(Phase(phase).value)  # type: ignore[return-value]  # typed as int


def timestamp(when: datetime, *, whole_microsecond: bool = False) -> Timestamp:
    """A datetime as a Timestamp: an aware one at its instant, a naive one read as UTC.

    ``whole_microsecond`` (for "created after" filters) makes it the last nanosecond of its
    microsecond: the server's times are finer than a datetime's, so a record's own ``created_at``
    (cut to the microsecond) would otherwise read as a moment just before the record.
    """
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime, got {type(when).__name__}")
    stamp = Timestamp()
    stamp.FromDatetime(when if when.tzinfo is not None else when.replace(tzinfo=UTC))
    if whole_microsecond:
        stamp.nanos += 999
    return stamp


def _phase(value: int) -> Phase:
    return Phase(common_pb2.ExecutionPhase.Name(value))


def _time(stamp: Timestamp, *, present: bool = True) -> datetime | None:
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)


M = TypeVar("M", bound=ProtoMessage)


@dataclass(frozen=True)
class _View(Generic[M]):
    _message: M = field(repr=False, compare=False)


@dataclass(frozen=True)
class Message:
    role: str
    text: str
    at: datetime | None


@dataclass(frozen=True)
class AgentExecution(_View[agent_execution_pb2.AgentExecution]):
    id: str
    agent: str
    message: str
    runtime_env: dict[str, str]
    phase: Phase
    messages: tuple[Message, ...]
    error: str
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    temporal_workflow_id: str
    parent_id: str
    request_id: str
    cancel_requested_at: datetime | None
    cancelled_by: str
    cancel_reason: str

    @classmethod
    def from_proto(cls, m: agent_execution_pb2.AgentExecution) -> AgentExecution:
        return cls(
            _message=m,
            id=m.id,
            agent=m.agent,
            message=m.message,
            runtime_env=dict(m.runtime_env),
            phase=_phase(m.phase),
            messages=tuple(Message(role=x.role, text=x.text, at=_time(x.at)) for x in m.messages),
            error=m.error,
            created_at=_time(m.created_at),
            started_at=_time(m.started_at, present=m.HasField("started_at")),
            completed_at=_time(m.completed_at, present=m.HasField("completed_at")),
            temporal_workflow_id=m.temporal_workflow_id,
            parent_id=m.parent_id,
            request_id=m.request_id,
            cancel_requested_at=_time(m.cancel_requested_at, present=m.HasField("cancel_requested_at")),
            cancelled_by=m.cancelled_by,
            cancel_reason=m.cancel_reason,
        )

    @property
    def replies(self) -> tuple[Message, ...]:
        """The agent's replies (the conversation without the user's message)."""
        return self.messages[1:]


@dataclass(frozen=True)
class ValidationResult(_View[workflow_pb2.ValidationResult]):
    valid: bool
    errors: tuple[str, ...]

    @classmethod
    def from_proto(cls, m: workflow_pb2.ValidationResult) -> ValidationResult:
        return cls(_message=m, valid=m.valid, errors=tuple(m.errors))


@dataclass(frozen=True)
class Workflow(_View[workflow_pb2.Workflow]):
    id: str
    name: str
    document: str
    validation: ValidationResult
    created_at: datetime | None
    request_id: str

    @classmethod
    def from_proto(cls, m: workflow_pb2.Workflow) -> Workflow:
        return cls(
            _message=m,
            id=m.id,
            name=m.name,
            document=m.document,
            validation=ValidationResult.from_proto(m.validation),
            created_at=_time(m.created_at),
            request_id=m.request_id,
        )


@dataclass(frozen=True)
class TaskState:
    name: str
    kind: str
    status: TaskStatus
    output: str
    error: str


@dataclass(frozen=True)
class WorkflowExecution(_View[workflow_execution_pb2.WorkflowExecution]):
    id: str
    workflow_id: str
    workflow_name: str
    input: str
    phase: Phase
    tasks: tuple[TaskState, ...]
    output: str
    error: str
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    temporal_workflow_id: str
    request_id: str
    cancel_requested_at: datetime | None
    cancelled_by: str
    cancel_reason: str

    @classmethod
    def from_proto(cls, m: workflow_execution_pb2.WorkflowExecution) -> WorkflowExecution:
        names = workflow_execution_pb2.TaskState.TaskStatus.Name
        return cls(
            _message=m,
            id=m.id,
            workflow_id=m.workflow_id,
            workflow_name=m.workflow_name,
            input=m.input,
            phase=_phase(m.phase),
            tasks=tuple(
                TaskState(name=t.name, kind=t.kind, status=TaskStatus(names(t.status)), output=t.output, error=t.error)
                for t in m.tasks
            ),
            output=m.output,
            error=m.error,
            created_at=_time(m.created_at),
            started_at=_time(m.started_at, present=m.HasField("started_at")),
            completed_at=_time(m.completed_at, present=m.HasField("completed_at")),
            temporal_workflow_id=m.temporal_workflow_id,
            request_id=m.request_id,
            cancel_requested_at=_time(m.cancel_requested_at, present=m.HasField("cancel_requested_at")),
            cancelled_by=m.cancelled_by,
            cancel_reason=m.cancel_reason,
        )


@dataclass(frozen=True)
class Transition:
    seq: int
    source: str
    dest: str
    trigger: str
    cause: str
    attempt: int
    at: datetime | None


@dataclass(frozen=True)
class ServerStatus(_View[status_pb2.ServerStatus]):
    """The server's Temporal connection: ``state`` ("CONNECTED", "UNHEALTHY", ...), since when,
    why not (``cause``, the last error) and when it tries again (``retry_in`` seconds)."""

    state: str
    since: datetime | None
    attempt: int
    cause: str
    retry_in: float | None
    workers_running: int
    reconnect_count: int
    temporal_address: str
    namespace: str
    server_version: str
    recent_transitions: tuple[Transition, ...]

    @property
    def connected(self) -> bool:
        return self.state == "CONNECTED"

    @classmethod
    def from_proto(cls, m: status_pb2.ServerStatus) -> ServerStatus:
        return cls(
            _message=m,
            state=m.state,
            since=_time(m.since),
            attempt=m.attempt,
            cause=m.last_error,
            retry_in=m.next_retry_in_seconds if m.HasField("next_retry_at") else None,
            workers_running=m.workers_running,
            reconnect_count=m.reconnect_count,
            temporal_address=m.temporal_address,
            namespace=m.namespace,
            server_version=m.server_version,
            recent_transitions=tuple(
                Transition(
                    seq=t.seq,
                    source=t.source,
                    dest=t.dest,
                    trigger=t.trigger,
                    cause=t.cause,
                    attempt=t.attempt,
                    at=_time(t.at),
                )
                for t in m.recent_transitions
            ),
        )


@dataclass(frozen=True)
class Page:
    """One page of a List: its items and the token for the next ("" after the last)."""

    items: tuple[Any, ...]
    next_page_token: str


def to_json(view: _View[Any]) -> dict[str, Any]:
    """The API's JSON mapping of what ``view`` was read from (field names as in the .proto)."""
    return MessageToDict(view._message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def message_of(view: _View[M]) -> M:
    """The protobuf message a view was read from (for the CLI's renderers; not for users)."""
    return view._message
