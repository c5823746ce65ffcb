import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_PHASE_UNSPECIFIED: _ClassVar[ExecutionPhase]
    PENDING: _ClassVar[ExecutionPhase]
    IN_PROGRESS: _ClassVar[ExecutionPhase]
    COMPLETED: _ClassVar[ExecutionPhase]
    FAILED: _ClassVar[ExecutionPhase]
    CANCELLED: _ClassVar[ExecutionPhase]
EXECUTION_PHASE_UNSPECIFIED: ExecutionPhase
PENDING: ExecutionPhase
IN_PROGRESS: ExecutionPhase
COMPLETED: ExecutionPhase
FAILED: ExecutionPhase
CANCELLED: ExecutionPhase

class Message(_message.Message):
    __slots__ = ("role", "text", "at")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    role: str
    text: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, role: _Optional[str] = ..., text: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
