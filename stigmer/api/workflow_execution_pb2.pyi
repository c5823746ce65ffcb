import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from stigmer.api import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowExecution(_message.Message):
    __slots__ = ("id", "workflow_id", "workflow_name", "input", "phase", "tasks", "output", "error", "created_at", "started_at", "completed_at", "temporal_workflow_id", "request_id", "cancel_requested_at", "cancelled_by", "cancel_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    workflow_id: str
    workflow_name: str
    input: str
    phase: _common_pb2.ExecutionPhase
    tasks: _containers.RepeatedCompositeFieldContainer[TaskState]
    output: str
    error: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    temporal_workflow_id: str
    request_id: str
    cancel_requested_at: _timestamp_pb2.Timestamp
    cancelled_by: str
    cancel_reason: str
    def __init__(self, id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., input: _Optional[str] = ..., phase: _Optional[_Union[_common_pb2.ExecutionPhase, str]] = ..., tasks: _Optional[_Iterable[_Union[TaskState, _Mapping]]] = ..., output: _Optional[str] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., temporal_workflow_id: _Optional[str] = ..., request_id: _Optional[str] = ..., cancel_requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled_by: _Optional[str] = ..., cancel_reason: _Optional[str] = ...) -> None: ...

class TaskState(_message.Message):
    __slots__ = ("name", "kind", "status", "output", "error")
    class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TASK_STATUS_UNSPECIFIED: _ClassVar[TaskState.TaskStatus]
        PENDING: _ClassVar[TaskState.TaskStatus]
        RUNNING: _ClassVar[TaskState.TaskStatus]
        COMPLETED: _ClassVar[TaskState.TaskStatus]
        FAILED: _ClassVar[TaskState.TaskStatus]
        SKIPPED: _ClassVar[TaskState.TaskStatus]
        CANCELLED: _ClassVar[TaskState.TaskStatus]
    TASK_STATUS_UNSPECIFIED: TaskState.TaskStatus
    PENDING: TaskState.TaskStatus
    RUNNING: TaskState.TaskStatus
    COMPLETED: TaskState.TaskStatus
    FAILED: TaskState.TaskStatus
    SKIPPED: TaskState.TaskStatus
    CANCELLED: TaskState.TaskStatus
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    status: TaskState.TaskStatus
    output: str
    error: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[_Union[TaskState.TaskStatus, str]] = ..., output: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class CreateWorkflowExecutionRequest(_message.Message):
    __slots__ = ("workflow", "input", "request_id")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    input: str
    request_id: str
    def __init__(self, workflow: _Optional[str] = ..., input: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetWorkflowExecutionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListWorkflowExecutionsRequest(_message.Message):
    __slots__ = ("phase", "page_size", "page_token", "workflow", "created_after")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    phase: _common_pb2.ExecutionPhase
    page_size: int
    page_token: str
    workflow: str
    created_after: _timestamp_pb2.Timestamp
    def __init__(self, phase: _Optional[_Union[_common_pb2.ExecutionPhase, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., workflow: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkflowExecutionsResponse(_message.Message):
    __slots__ = ("executions", "next_page_token")
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    executions: _containers.RepeatedCompositeFieldContainer[WorkflowExecution]
    next_page_token: str
    def __init__(self, executions: _Optional[_Iterable[_Union[WorkflowExecution, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchWorkflowExecutionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelWorkflowExecutionRequest(_message.Message):
    __slots__ = ("id", "reason", "requested_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    requested_by: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class DeleteWorkflowExecutionRequest(_message.Message):
    __slots__ = ("id", "force")
    ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    force: bool
    def __init__(self, id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...
