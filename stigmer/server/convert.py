"""Store records and connection snapshots <-> stigmer.v1 protobuf messages.

Pure functions, no I/O, so that the mapping (timestamps, phases, unset fields) is unit tested
without a server. Text fields are copied as they are: the API promises payloads byte for byte.
"""

from __future__ import annotations

import math
import time

from google.protobuf.timestamp_pb2 import Timestamp

from statemachine import TransitionEvent
from stigmer.api import agent_execution_pb2, common_pb2, status_pb2, workflow_execution_pb2, workflow_pb2
from stigmer.errors import InvalidArgumentError
from stigmer.store import AgentExecution, Message, Phase, TaskState, TaskStatus, Workflow, WorkflowExecution
from stigmer.temporal.status import ConnectionStatus
from stigmer.workflows.workflowdoc import ValidationResult

_PHASES: dict[Phase, common_pb2.ExecutionPhase] = {
    Phase.PENDING: common_pb2.PENDING,
    Phase.IN_PROGRESS: common_pb2.IN_PROGRESS,
    Phase.COMPLETED: common_pb2.COMPLETED,
    Phase.FAILED: common_pb2.FAILED,
    Phase.CANCELLED: common_pb2.CANCELLED,
}
_PHASE_NAMES = {value: phase.value for phase, value in _PHASES.items()}

_TASK_STATUSES: dict[TaskStatus, workflow_execution_pb2.TaskState.TaskStatus] = {
    TaskStatus.PENDING: workflow_execution_pb2.TaskState.PENDING,
    TaskStatus.RUNNING: workflow_execution_pb2.TaskState.RUNNING,
    TaskStatus.COMPLETED: workflow_execution_pb2.TaskState.COMPLETED,
    TaskStatus.FAILED: workflow_execution_pb2.TaskState.FAILED,
    TaskStatus.SKIPPED: workflow_execution_pb2.TaskState.SKIPPED,
    TaskStatus.CANCELLED: workflow_execution_pb2.TaskState.CANCELLED,
}


# ---------------------------------------------------------------------------------------- scalars


def timestamp(seconds: float) -> Timestamp:
    """Unix seconds -> Timestamp, rounded to the nearest nanosecond (floats carry ~0.2 us here)."""
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite time: {seconds!r}")
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1_000_000_000))
    return stamp


def seconds(stamp: Timestamp) -> float:
    """Timestamp -> unix seconds (the inverse of :func:`timestamp`, to float precision)."""
    return stamp.seconds + stamp.nanos / 1_000_000_000


def phase_to_proto(phase: Phase) -> common_pb2.ExecutionPhase:
    return _PHASES[phase]


def phase_filter(value: int) -> str:
    """A List request's phase -> the controllers' filter: "" for UNSPECIFIED (any), else the name.

    proto3 enums are open, so a client can send a number this server does not know; that is
    the caller's mistake and is reported against the field, not as an internal error.
    """
    if value == common_pb2.EXECUTION_PHASE_UNSPECIFIED:
        return ""
    try:
        return _PHASE_NAMES[value]  # type: ignore[index,unused-ignore]
    except KeyError:
        known = ", ".join(f"{name} ({number})" for number, name in sorted(_PHASE_NAMES.items()))
        raise InvalidArgumentError("phase", f"unknown phase {value}; use one of {known}") from None


#: google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def created_after(
    request: agent_execution_pb2.ListAgentExecutionsRequest | workflow_execution_pb2.ListWorkflowExecutionsRequest,
) -> float | None:
    """A List request's created_after -> unix seconds, None when unset; INVALID_ARGUMENT outside
    google.protobuf.Timestamp's range (years 1-9999, nanos 0-999,999,999)."""
    if not request.HasField("created_after"):
        return None
    stamp = request.created_after
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgumentError(
            "created_after", f"not a valid timestamp (seconds={stamp.seconds}, nanos={stamp.nanos}): years 1 to 9999"
        )
    return seconds(stamp)


def _set_time(target: Timestamp, value: float | None) -> None:
    # Unset means "has not happened yet" (the API's convention); never send 1970.
    if value is not None:
        target.CopyFrom(timestamp(value))


def message_to_proto(message: Message) -> common_pb2.Message:
    return common_pb2.Message(role=message.role, text=message.text, at=timestamp(message.at))


# ---------------------------------------------------------------------------------------- records


def agent_execution_to_proto(record: AgentExecution) -> agent_execution_pb2.AgentExecution:
    out = agent_execution_pb2.AgentExecution(
        id=record.id,
        agent=record.agent,
        message=record.message,
        runtime_env=record.runtime_env,
        phase=phase_to_proto(record.phase),
        messages=[message_to_proto(m) for m in record.messages],
        error=record.error,
        created_at=timestamp(record.created_at),
        temporal_workflow_id=record.workflow_id,
        parent_id=record.parent_id,
        request_id=record.request_id,
        cancelled_by=record.cancelled_by,
        cancel_reason=record.cancel_reason,
    )
    _set_time(out.started_at, record.started_at)
    _set_time(out.completed_at, record.completed_at)
    _set_time(out.cancel_requested_at, record.cancel_requested_at)
    return out


def validation_to_proto(result: ValidationResult) -> workflow_pb2.ValidationResult:
    return workflow_pb2.ValidationResult(valid=result.valid, errors=list(result.errors))


def workflow_to_proto(record: Workflow) -> workflow_pb2.Workflow:
    return workflow_pb2.Workflow(
        id=record.id,
        name=record.name,
        document=record.document,
        validation=workflow_pb2.ValidationResult(valid=record.valid, errors=list(record.validation_errors)),
        created_at=timestamp(record.created_at),
        request_id=record.request_id,
    )


def task_to_proto(task: TaskState) -> workflow_execution_pb2.TaskState:
    return workflow_execution_pb2.TaskState(
        name=task.name, kind=task.kind, status=_TASK_STATUSES[task.status], output=task.output, error=task.error
    )


def workflow_execution_to_proto(record: WorkflowExecution) -> workflow_execution_pb2.WorkflowExecution:
    out = workflow_execution_pb2.WorkflowExecution(
        id=record.id,
        workflow_id=record.workflow_id,
        workflow_name=record.workflow_name,
        input=record.input,
        phase=phase_to_proto(record.phase),
        tasks=[task_to_proto(t) for t in record.tasks],
        output=record.output,
        error=record.error,
        created_at=timestamp(record.created_at),
        temporal_workflow_id=record.temporal_workflow_id,
        request_id=record.request_id,
        cancelled_by=record.cancelled_by,
        cancel_reason=record.cancel_reason,
    )
    _set_time(out.started_at, record.started_at)
    _set_time(out.completed_at, record.completed_at)
    _set_time(out.cancel_requested_at, record.cancel_requested_at)
    return out


# ---------------------------------------------------------------------------------------- status


def transition_to_proto(event: TransitionEvent) -> status_pb2.Transition:
    return status_pb2.Transition(
        seq=event.seq,
        source=event.source.name,
        dest=event.dest.name,
        trigger=event.trigger,
        cause=event.cause,
        attempt=event.attempt,
        at=timestamp(event.wall),
    )


def server_status_to_proto(
    status: ConnectionStatus, *, version: str, now_wall: float | None = None
) -> status_pb2.ServerStatus:
    """A connection status -> ServerStatus.

    The snapshot keeps the next retry on the monotonic clock (it must not jump with the wall
    clock); people need a wall time, so it is rebuilt as "now + time remaining".
    """
    snap = status.snapshot
    out = status_pb2.ServerStatus(
        state=snap.state.name,
        since=timestamp(snap.since_wall),
        attempt=snap.attempt,
        last_error=snap.last_error,
        workers_running=status.workers_running,
        reconnect_count=snap.reconnect_count,
        temporal_address=status.host_port,
        namespace=status.namespace,
        server_version=version,
        recent_transitions=[transition_to_proto(e) for e in snap.recent],
    )
    if snap.next_retry_in is not None:
        remaining = max(0.0, snap.next_retry_in)
        out.next_retry_in_seconds = remaining
        out.next_retry_at.CopyFrom(timestamp((time.time() if now_wall is None else now_wall) + remaining))
    return out
