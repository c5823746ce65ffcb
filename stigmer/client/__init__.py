"""The Python client of the stigmer server: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

::

    from stigmer.client import Client, TemporalUnavailableError

    with Client() as client:                       # STIGMER_SERVER_ADDRESS, else 127.0.0.1:7234
        client.wait_temporal_connected(timeout=30)
        execution = client.create_agent_execution(agent="echo", message="hello")
        done = client.wait_for_phase(execution.id, ["COMPLETED"], timeout=60)

Results are frozen views (stigmer.client.models), errors the stigmer.errors classes (re-exported
here), each with the gRPC ``code`` it came from.
"""

from stigmer.client._aio import AsyncClient
from stigmer.client._sync import Client
from stigmer.client.models import (
    AgentExecution,
    Message,
    Page,
    ServerStatus,
    TaskState,
    Transition,
    ValidationResult,
    Workflow,
    WorkflowExecution,
    to_json,
)
from stigmer.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PhaseNotReachedError,
    ServerUnreachableError,
    StigmerError,
    TemporalUnavailableError,
    UnauthenticatedError,
    WaitTimeoutError,
)
from stigmer.phases import Phase, TaskStatus

__all__ = [
    "AgentExecution",
    "AlreadyExistsError",
    "AsyncClient",
    "Client",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "Message",
    "NotFoundError",
    "Page",
    "Phase",
    "PhaseNotReachedError",
    "ServerStatus",
    "ServerUnreachableError",
    "StigmerError",
    "TaskState",
    "TaskStatus",
    "TemporalUnavailableError",
    "Transition",
    "UnauthenticatedError",
    "ValidationResult",
    "WaitTimeoutError",
    "Workflow",
    "WorkflowExecution",
    "to_json",
]
