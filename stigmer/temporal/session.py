"""TemporalSession: one verified client, as the reconciler uses it (controllers.ports.Session)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from stigmer.controllers.ports import RemoteStatus
from stigmer.temporal.creators import AgentExecutionCreator, WorkflowExecutionCreator, with_deadline
from stigmer.temporal.names import TaskQueues

_STATUS = {
    WorkflowExecutionStatus.RUNNING: RemoteStatus.RUNNING,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: RemoteStatus.RUNNING,
    WorkflowExecutionStatus.COMPLETED: RemoteStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: RemoteStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED: RemoteStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT: RemoteStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED: RemoteStatus.CANCELED,
}


class TemporalSession:
    """Starters and a workflow-status question, all through one client."""

    def __init__(self, client: Client, *, queues: TaskQueues) -> None:
        self._client = client
        self.agent_executions = AgentExecutionCreator(client, queues=queues)
        self.workflow_executions = WorkflowExecutionCreator(client, queues=queues)

    @property
    def client(self) -> Client:
        return self._client

    async def describe(self, workflow_id: str, *, timeout: float) -> RemoteStatus | None:  # noqa: ASYNC109
        """The workflow's status, None if Temporal has no such workflow; TemporalUnavailableError
        if it does not answer within ``timeout`` s (the outer bound covers the SDK's own retries,
        which ``rpc_timeout`` does not)."""
        handle = self._client.get_workflow_handle(workflow_id)
        try:
            description = await with_deadline(
                handle.describe(rpc_timeout=timedelta(seconds=timeout)), timeout=timeout + 0.5,
                what=f"describing {workflow_id}",
            )  # fmt: skip
        except RPCError as err:  # not an outage (with_deadline raised those as TemporalUnavailableError)
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        status = description.status
        return RemoteStatus.OTHER if status is None else _STATUS.get(status, RemoteStatus.OTHER)
