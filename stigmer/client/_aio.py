"""AsyncClient: every RPC of the stigmer server, typed, on asyncio (the one implementation).

The sync :class:`stigmer.client.Client` runs this same code on a loop of its own thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from typing import TypeVar

from grpc_health.v1 import health_pb2

from stigmer.api import agent_execution_pb2, common_pb2, status_pb2, workflow_execution_pb2, workflow_pb2
from stigmer.client._transport import Transport, fill_request_id, requester
from stigmer.client.models import (
    AgentExecution,
    Page,
    ServerStatus,
    ValidationResult,
    Workflow,
    WorkflowExecution,
    phase_to_proto,
    timestamp,
)
from stigmer.errors import PhaseNotReachedError, ServerUnreachableError, WaitTimeoutError
from stigmer.phases import Phase

V = TypeVar("V", AgentExecution, WorkflowExecution)

_AEX = "/stigmer.v1.AgentExecutionService/"
_WF = "/stigmer.v1.WorkflowService/"
_WEX = "/stigmer.v1.WorkflowExecutionService/"
_HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
_TEMPORAL_SERVICE = "stigmer.temporal"
#: A Delete with force waits on the server (up to 30 s) for the execution to stop: the call's least deadline.
FORCE_DELETE_DEADLINE = 40.0
_TERMINAL = frozenset(p for p in Phase if p.terminal)


class AsyncClient(Transport):
    """A connection to one stigmer server, or to several. ``async with AsyncClient() as client: ...``

    ``address`` defaults to ``STIGMER_SERVER_ADDRESS`` (else 127.0.0.1:7234): ``host:port``, several
    IP addresses (``"10.0.0.1:7234,10.0.0.2:7234"``) or a DNS name with several records, among which
    gRPC balances (round_robin) and retries UNAVAILABLE on the idempotent calls (not Delete; see
    stigmer.client.target); a bad one is ConfigError naming the setting. Token and TLS come
    from the same variables as the CLI's (``STIGMER_AUTH_TOKEN``, ``STIGMER_TLS_CA``, ...) unless
    ``security`` is given. ``timeout`` bounds each call (seconds). ``retry_unavailable`` (seconds,
    off by default) retries a call the server refused with :class:`TemporalUnavailableError`,
    waiting the ``retry_after`` it sent, for at most that long in all: safe for creates too, since
    such a refusal stored nothing. A call that timed out is never retried (it may have landed).

    Every create sends a ``request_id`` (AIP-155): a fresh UUID per call unless one is given, the
    same on each of the call's own retries, so a retry can never create a second record. Give your
    own to retry a create safely across calls or processes (the server remembers it for 24 h: the
    same id and body return the first record; another body is :class:`AlreadyExistsError`).
    """

    # -- agent executions ------------------------------------------------------------------

    async def create_agent_execution(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AgentExecution:
        """Record an execution and start it; ``request_id``: see the class (None: a fresh one, "": none)."""
        request = agent_execution_pb2.CreateAgentExecutionRequest(
            agent=agent, message=message, runtime_env=dict(runtime_env or {}), request_id=fill_request_id(request_id)
        )
        reply = await self._unary(
            _AEX + "Create", request, agent_execution_pb2.AgentExecution, timeout, retries=bool(request.request_id)
        )
        return AgentExecution.from_proto(reply)

    async def get_agent_execution(self, id: str, *, timeout: float | None = None) -> AgentExecution:
        request = agent_execution_pb2.GetAgentExecutionRequest(id=id)
        return AgentExecution.from_proto(
            await self._unary(_AEX + "Get", request, agent_execution_pb2.AgentExecution, timeout)
        )

    async def list_agent_executions_page(
        self,
        *,
        phase: Phase | str | None = None,
        agent: str = "",
        parent_id: str = "",
        created_after: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        """One page; the filters (all optional) are ANDed: ``agent`` (exact name), ``parent_id``
        (the steps of one "wex-..."), ``created_after`` (strictly after; a naive datetime is UTC; a
        record's own ``created_at`` lists those created after it)."""
        request = agent_execution_pb2.ListAgentExecutionsRequest(
            phase=_phase(phase), agent=agent, parent_id=parent_id, page_size=page_size, page_token=page_token
        )
        if created_after is not None:
            request.created_after.CopyFrom(timestamp(created_after, whole_microsecond=True))
        reply = await self._unary(_AEX + "List", request, agent_execution_pb2.ListAgentExecutionsResponse, timeout)
        return Page(tuple(AgentExecution.from_proto(m) for m in reply.executions), reply.next_page_token)

    def list_agent_executions(
        self,
        *,
        phase: Phase | str | None = None,
        agent: str = "",
        parent_id: str = "",
        created_after: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AgentExecution]:
        """Every agent execution (newest first) that passes the filters, page by page as the iteration goes."""
        return self._pages(
            lambda token: self.list_agent_executions_page(
                phase=phase,
                agent=agent,
                parent_id=parent_id,
                created_after=created_after,
                page_size=page_size,
                page_token=token,
            )
        )

    async def watch_agent_execution(self, id: str, *, timeout: float | None = None) -> AsyncIterator[AgentExecution]:
        """The execution now, then after each change; ends after a terminal phase."""
        request = agent_execution_pb2.WatchAgentExecutionRequest(id=id)
        async for m in self._stream(_AEX + "Watch", request, agent_execution_pb2.AgentExecution, timeout):
            yield AgentExecution.from_proto(m)

    async def cancel_agent_execution(
        self,
        id: str,
        *,
        reason: str = "",
        requested_by: str | None = None,
        wait: bool = False,
        wait_timeout: float = 60.0,
        timeout: float | None = None,
    ) -> AgentExecution:
        """Ask the execution to stop; returns it with ``cancel_requested_at`` set (it reaches
        CANCELLED about a second later). ``requested_by`` defaults to user@host. With ``wait``,
        follows it to its terminal phase and returns that: CANCELLED, or COMPLETED/FAILED if it
        finished first (WaitTimeoutError after ``wait_timeout`` s). FailedPreconditionError if
        it had already finished."""
        request = agent_execution_pb2.CancelAgentExecutionRequest(
            id=id, reason=reason, requested_by=requester(requested_by)
        )
        reply = await self._unary(_AEX + "Cancel", request, agent_execution_pb2.AgentExecution, timeout)
        record = AgentExecution.from_proto(reply)
        if wait and not record.phase.terminal:
            return await _until(self.watch_agent_execution(id), id, _TERMINAL, wait_timeout)
        return record

    async def delete_agent_execution(
        self, id: str, *, force: bool = False, timeout: float | None = None
    ) -> AgentExecution:
        """Delete a finished execution; returns it as it was. FailedPreconditionError if it is
        unfinished, unless ``force``: then the server cancels it and waits (up to 30 s) first."""
        request = agent_execution_pb2.DeleteAgentExecutionRequest(id=id, force=force)
        reply = await self._unary(
            _AEX + "Delete", request, agent_execution_pb2.AgentExecution, self._delete_deadline(force, timeout)
        )
        return AgentExecution.from_proto(reply)

    def _delete_deadline(self, force: bool, timeout: float | None) -> float | None:
        return timeout if timeout or not force else max(self.timeout, FORCE_DELETE_DEADLINE)

    # -- workflows -------------------------------------------------------------------------

    async def create_workflow(
        self, document: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> Workflow:
        """Validate and store a document; ``request_id``: see the class (None: a fresh one, "": none)."""
        request = workflow_pb2.CreateWorkflowRequest(document=document, request_id=fill_request_id(request_id))
        reply = await self._unary(
            _WF + "Create", request, workflow_pb2.Workflow, timeout, retries=bool(request.request_id)
        )
        return Workflow.from_proto(reply)

    async def validate_workflow(self, document: str, *, timeout: float | None = None) -> ValidationResult:
        request = workflow_pb2.ValidateWorkflowRequest(document=document)
        reply = await self._unary(_WF + "Validate", request, workflow_pb2.ValidationResult, timeout)
        return ValidationResult.from_proto(reply)

    async def get_workflow(self, id_or_name: str, *, timeout: float | None = None) -> Workflow:
        request = workflow_pb2.GetWorkflowRequest(id_or_name=id_or_name)
        return Workflow.from_proto(await self._unary(_WF + "Get", request, workflow_pb2.Workflow, timeout))

    async def list_workflows_page(
        self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> Page:
        request = workflow_pb2.ListWorkflowsRequest(page_size=page_size, page_token=page_token)
        reply = await self._unary(_WF + "List", request, workflow_pb2.ListWorkflowsResponse, timeout)
        return Page(tuple(Workflow.from_proto(m) for m in reply.workflows), reply.next_page_token)

    def list_workflows(self, *, page_size: int = 100) -> AsyncIterator[Workflow]:
        return self._pages(lambda token: self.list_workflows_page(page_size=page_size, page_token=token))

    async def delete_workflow(self, id_or_name: str, *, timeout: float | None = None) -> Workflow:
        """Delete a workflow (its finished executions stay); returns it as it was.
        FailedPreconditionError while executions of it are unfinished."""
        request = workflow_pb2.DeleteWorkflowRequest(id_or_name=id_or_name)
        return Workflow.from_proto(await self._unary(_WF + "Delete", request, workflow_pb2.Workflow, timeout))

    # -- workflow executions ---------------------------------------------------------------

    async def create_workflow_execution(
        self, *, workflow: str, input: str = "", request_id: str | None = None, timeout: float | None = None
    ) -> WorkflowExecution:
        """Run a stored workflow; ``request_id``: see the class (None: a fresh one, "": none)."""
        request = workflow_execution_pb2.CreateWorkflowExecutionRequest(
            workflow=workflow, input=input, request_id=fill_request_id(request_id)
        )
        reply = await self._unary(
            _WEX + "Create",
            request,
            workflow_execution_pb2.WorkflowExecution,
            timeout,
            retries=bool(request.request_id),
        )
        return WorkflowExecution.from_proto(reply)

    async def get_workflow_execution(self, id: str, *, timeout: float | None = None) -> WorkflowExecution:
        request = workflow_execution_pb2.GetWorkflowExecutionRequest(id=id)
        reply = await self._unary(_WEX + "Get", request, workflow_execution_pb2.WorkflowExecution, timeout)
        return WorkflowExecution.from_proto(reply)

    async def list_workflow_executions_page(
        self,
        *,
        phase: Phase | str | None = None,
        workflow: str = "",
        created_after: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        """One page; the filters (all optional) are ANDed: ``workflow`` (its id or name),
        ``created_after`` (strictly after; a naive datetime is UTC)."""
        request = workflow_execution_pb2.ListWorkflowExecutionsRequest(
            phase=_phase(phase), workflow=workflow, page_size=page_size, page_token=page_token
        )
        if created_after is not None:
            request.created_after.CopyFrom(timestamp(created_after, whole_microsecond=True))
        reply = await self._unary(
            _WEX + "List", request, workflow_execution_pb2.ListWorkflowExecutionsResponse, timeout
        )
        return Page(tuple(WorkflowExecution.from_proto(m) for m in reply.executions), reply.next_page_token)

    def list_workflow_executions(
        self,
        *,
        phase: Phase | str | None = None,
        workflow: str = "",
        created_after: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[WorkflowExecution]:
        return self._pages(
            lambda token: self.list_workflow_executions_page(
                phase=phase, workflow=workflow, created_after=created_after, page_size=page_size, page_token=token
            )
        )

    async def watch_workflow_execution(
        self, id: str, *, timeout: float | None = None
    ) -> AsyncIterator[WorkflowExecution]:
        """The execution now, then after each change (tasks too); ends after a terminal phase."""
        request = workflow_execution_pb2.WatchWorkflowExecutionRequest(id=id)
        async for m in self._stream(_WEX + "Watch", request, workflow_execution_pb2.WorkflowExecution, timeout):
            yield WorkflowExecution.from_proto(m)

    async def cancel_workflow_execution(
        self,
        id: str,
        *,
        reason: str = "",
        requested_by: str | None = None,
        wait: bool = False,
        wait_timeout: float = 60.0,
        timeout: float | None = None,
    ) -> WorkflowExecution:
        """As :meth:`cancel_agent_execution`: its running task becomes CANCELLED (an agent step's
        execution with it), the tasks not reached SKIPPED."""
        request = workflow_execution_pb2.CancelWorkflowExecutionRequest(
            id=id, reason=reason, requested_by=requester(requested_by)
        )
        reply = await self._unary(_WEX + "Cancel", request, workflow_execution_pb2.WorkflowExecution, timeout)
        record = WorkflowExecution.from_proto(reply)
        if wait and not record.phase.terminal:
            return await _until(self.watch_workflow_execution(id), id, _TERMINAL, wait_timeout)
        return record

    async def delete_workflow_execution(
        self, id: str, *, force: bool = False, timeout: float | None = None
    ) -> WorkflowExecution:
        """As :meth:`delete_agent_execution`; the agent executions of its steps go with it."""
        request = workflow_execution_pb2.DeleteWorkflowExecutionRequest(id=id, force=force)
        deadline = self._delete_deadline(force, timeout)
        reply = await self._unary(_WEX + "Delete", request, workflow_execution_pb2.WorkflowExecution, deadline)
        return WorkflowExecution.from_proto(reply)

    # -- the connection to Temporal --------------------------------------------------------

    async def status(self, *, timeout: float | None = None) -> ServerStatus:
        reply = await self._unary("/stigmer.v1.StatusService/GetStatus", status_pb2.GetStatusRequest(),
                                  status_pb2.ServerStatus, timeout)  # fmt: skip
        return ServerStatus.from_proto(reply)

    async def is_temporal_connected(self, *, timeout: float | None = None) -> bool:
        return (await self.status(timeout=timeout)).connected

    async def wait_temporal_connected(self, timeout: float = 30.0) -> ServerStatus:
        """Until the server is CONNECTED to Temporal, by its health Watch stream (no polling); a
        server that is not up yet is waited for too. WaitTimeoutError after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        async for reply in self._stream(
                            _HEALTH_WATCH, health_pb2.HealthCheckRequest(service=_TEMPORAL_SERVICE),
                            health_pb2.HealthCheckResponse,
                        ):  # fmt: skip
                            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                                return await self.status()
                    except ServerUnreachableError:
                        await asyncio.sleep(0.1)  # not listening yet (or restarting): ask again
        except TimeoutError:
            raise WaitTimeoutError(await self._not_connected_yet(timeout)) from None

    async def _not_connected_yet(self, timeout: float) -> str:
        try:
            status = await self.status(timeout=min(self.timeout, 2.0))
        except ServerUnreachableError as err:
            return f"no stigmer server answered at {self.address} within {timeout:g} s ({err})"
        cause = f" (last error: {status.cause})" if status.cause else ""
        return f"the server at {self.address} was still {status.state} after {timeout:g} s{cause}"

    async def wait_for_phase(
        self,
        id: str,
        phases: Collection[Phase | str],
        timeout: float = 60.0,
    ) -> AgentExecution | WorkflowExecution:
        """Watch an execution ("aex-..." or "wex-...") until it is in one of ``phases``.

        PhaseNotReachedError if it ends in another phase; WaitTimeoutError after ``timeout`` s.
        """
        wanted = {Phase(p) for p in phases}
        if id.startswith("wex-"):
            return await _until(self.watch_workflow_execution(id), id, wanted, timeout)
        return await _until(self.watch_agent_execution(id), id, wanted, timeout)


async def _until(watch: AsyncIterator[V], id: str, wanted: Collection[Phase], timeout: float) -> V:
    """The first state of a Watch in one of ``wanted``; the errors of :meth:`AsyncClient.wait_for_phase`."""
    last: V | None = None
    try:
        async with asyncio.timeout(timeout):
            async for last in watch:
                if last.phase in wanted:
                    return last
    except TimeoutError:
        state = f"still {last.phase}" if last else "no answer"
        what = "finished" if set(wanted) == _TERMINAL else "/".join(sorted(wanted))
        raise WaitTimeoutError(f"{id} not {what} after {timeout:g} s ({state})") from None
    finally:
        await watch.aclose()  # type: ignore[attr-defined]  # an async generator
    assert last is not None  # a Watch sends the current state first
    raise PhaseNotReachedError(f"{id} ended {last.phase}: {last.error or 'no error'}", execution=last)


def _phase(phase: Phase | str | None) -> common_pb2.ExecutionPhase:
    return common_pb2.EXECUTION_PHASE_UNSPECIFIED if not phase else phase_to_proto(phase)
