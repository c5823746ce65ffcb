import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerStatus(_message.Message):
    __slots__ = ("state", "since", "attempt", "next_retry_at", "next_retry_in_seconds", "last_error", "workers_running", "reconnect_count", "temporal_address", "namespace", "server_version", "recent_transitions", "process")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NEXT_RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_RETRY_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKERS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECENT_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    state: str
    since: _timestamp_pb2.Timestamp
    attempt: int
    next_retry_at: _timestamp_pb2.Timestamp
    next_retry_in_seconds: float
    last_error: str
    workers_running: int
    reconnect_count: int
    temporal_address: str
    namespace: str
    server_version: str
    recent_transitions: _containers.RepeatedCompositeFieldContainer[Transition]
    process: ProcessStats
    def __init__(self, state: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., next_retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_retry_in_seconds: _Optional[float] = ..., last_error: _Optional[str] = ..., workers_running: _Optional[int] = ..., reconnect_count: _Optional[int] = ..., temporal_address: _Optional[str] = ..., namespace: _Optional[str] = ..., server_version: _Optional[str] = ..., recent_transitions: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., process: _Optional[_Union[ProcessStats, _Mapping]] = ...) -> None: ...

class ProcessStats(_message.Message):
    __slots__ = ("asyncio_tasks", "threads", "open_fds")
    ASYNCIO_TASKS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FDS_FIELD_NUMBER: _ClassVar[int]
    asyncio_tasks: int
    threads: int
    open_fds: int
    def __init__(self, asyncio_tasks: _Optional[int] = ..., threads: _Optional[int] = ..., open_fds: _Optional[int] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("seq", "source", "dest", "trigger", "cause", "attempt", "at")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    source: str
    dest: str
    trigger: str
    cause: str
    attempt: int
    at: _timestamp_pb2.Timestamp
    def __init__(self, seq: _Optional[int] = ..., source: _Optional[str] = ..., dest: _Optional[str] = ..., trigger: _Optional[str] = ..., cause: _Optional[str] = ..., attempt: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
