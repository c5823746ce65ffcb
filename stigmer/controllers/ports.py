"""The seam between the controllers and the Temporal layer: what the controllers need, as protocols.

Controllers import this module and never ``stigmer.temporal``; the Temporal layer implements
these structurally (stigmer.temporal.creators, stigmer.temporal.session) and the connection
satisfies :class:`Availability`. Unit tests pass small fakes.

A *client* here is opaque: whatever identifies the connection a creator or a session runs on,
handed back in :meth:`Availability.report_unavailable` so that a report about a connection that
has already been replaced is dropped.
"""

from __future__ import annotations

import enum
from typing import Protocol

from stigmer.workflows.workflowdoc import ValidationResult


class Availability(Protocol):
    """What the controllers know about the connection (stigmer.temporal.connection implements it)."""

    async def wait_available(self) -> bool:
        """Ask for one immediate connection attempt and wait a short, bounded time for it.

        True if the connection is (now) CONNECTED. Called only when a request found no creator.
        """
        ...

    def report_unavailable(self, error: BaseException | str, *, client: object | None = None) -> None:
        """A request saw Temporal unavailable through ``client``; a report about an old client is ignored."""
        ...

    def unavailable_details(self) -> tuple[str, float]:
        """(connection state name, seconds until the next attempt) for an UNAVAILABLE answer."""
        ...


class Starter(Protocol):
    """Starts, and cancels, the workflow of a stored execution (an agent or a workflow execution).

    ``start`` is idempotent (a second start of the same id is a no-op); ``cancel`` asks the
    running workflow to stop and returns False when Temporal has no running workflow for it. Both
    raise stigmer.errors.TemporalUnavailableError when Temporal does not answer within ``timeout`` s.
    """

    @property
    def client(self) -> object: ...

    async def start(self, execution_id: str, *, timeout: float) -> str: ...  # noqa: ASYNC109

    async def cancel(self, execution_id: str, *, timeout: float) -> bool: ...  # noqa: ASYNC109


class Validator(Protocol):
    """Validates a workflow document through Temporal (TemporalUnavailableError if no answer)."""

    @property
    def client(self) -> object: ...

    async def validate(self, document: str, *, timeout: float) -> ValidationResult: ...  # noqa: ASYNC109


class RemoteStatus(enum.Enum):
    """A workflow's status as Temporal reports it, in the reconciler's terms (names as Temporal's)."""

    RUNNING = "running"  # running, or continued as new: it will record its result
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    OTHER = "other"  # a status this code does not know


class Session(Protocol):
    """One verified connection, as the reconciler uses it (stigmer.temporal.session.TemporalSession)."""

    @property
    def client(self) -> object: ...

    @property
    def agent_executions(self) -> Starter: ...

    @property
    def workflow_executions(self) -> Starter: ...

    async def describe(self, workflow_id: str, *, timeout: float) -> RemoteStatus | None:  # noqa: ASYNC109
        """The workflow's status; None when Temporal has no such workflow. Raises
        stigmer.errors.TemporalUnavailableError when Temporal does not answer in time."""
        ...


__all__ = ["Availability", "RemoteStatus", "Session", "Starter", "Validator"]
