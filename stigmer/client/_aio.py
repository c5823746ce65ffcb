"""AsyncClient: every RPC of the stigmer server, typed, on asyncio (the one implementation).

The sync :class:`stigmer.client.Client` runs this same code on a loop of its own thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage
from grpc_health.v1 import health_pb2

from stigmer.api import agent_execution_pb2, common_pb2, status_pb2, workflow_execution_pb2, workflow_pb2
from stigmer.client import _errors
from stigmer.client.models import (
    AgentExecution,
    Page,
    ServerStatus,
    ValidationResult,
    Workflow,
    WorkflowExecution,
    phase_to_proto,
)
from stigmer.config import DEFAULT_ADDRESS
from stigmer.errors import (
    PhaseNotReachedError,
    ServerUnreachableError,
    StigmerError,
    TemporalUnavailableError,
    WaitTimeoutError,
)
from stigmer.phases import Phase
from stigmer.security import ClientSecurity, Secret

ADDRESS_ENV = "STIGMER_SERVER_ADDRESS"
T = TypeVar("T")
V = TypeVar("V", AgentExecution, WorkflowExecution)

_AEX = "/stigmer.v1.AgentExecutionService/"
_WF = "/stigmer.v1.WorkflowService/"
_WEX = "/stigmer.v1.WorkflowExecutionService/"
_HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
_TEMPORAL_SERVICE = "stigmer.temporal"
#: No client-side size cap: a workflow execution with many agent steps can exceed gRPC's 4 MiB.
_OPTIONS: list[tuple[str, Any]] = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", -1)]


class AsyncClient:
    """A connection to one stigmer server. ``async with AsyncClient() as client: ...``

    ``address`` defaults to ``STIGMER_SERVER_ADDRESS`` (else 127.0.0.1:7234); token and TLS come
    from the same variables as the CLI's (``STIGMER_AUTH_TOKEN``, ``STIGMER_TLS_CA``, ...) unless
    ``security`` is given. ``timeout`` bounds each call (seconds). ``retry_unavailable`` (seconds,
    off by default) retries a call the server refused with :class:`TemporalUnavailableError`,
    waiting the ``retry_after`` it sent, for at most that long in all: safe for creates too, since
    such a refusal stored nothing. A call that timed out is never retried (it may have landed).
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        token: str | None = None,
        security: ClientSecurity | None = None,
        timeout: float = 30.0,
        retry_unavailable: float = 0.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.address = address or os.environ.get(ADDRESS_ENV, "").strip() or DEFAULT_ADDRESS
        security = security or ClientSecurity.from_env()
        if token is not None:  # "" sends none
            security = dataclasses.replace(security, token=Secret(token) if token else None)
        self._security = security
        self.timeout = timeout
        self.retry_unavailable = retry_unavailable
        self._metadata = security.metadata() or None
        self._channel: grpc.aio.Channel | None = None
        self._unaries: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; safe twice."""
        self._closed = True
        channel, self._channel = self._channel, None
        self._unaries.clear()
        if channel is not None:
            await channel.close()

    def _open(self) -> grpc.aio.Channel:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._channel is None:
            self._channel = self._security.aio_channel(self.address, options=_OPTIONS)
        return self._channel

    # -- the two call shapes ---------------------------------------------------------------

    def _error(self, error: grpc.RpcError) -> StigmerError:
        return _errors.from_rpc(error, address=self.address, tls=self._security.tls)

    async def _unary(self, method: str, request: ProtoMessage, reply: type[T], timeout: float | None) -> T:
        call = self._unaries.get(method)
        if call is None:  # one multicallable per method and channel: making one per call costs CPU
            call = self._unaries[method] = self._open().unary_unary(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString,  # type: ignore[attr-defined]
            )
        budget = time.monotonic() + self.retry_unavailable
        while True:
            try:
                result: T = await call(request, timeout=timeout or self.timeout, metadata=self._metadata)
                return result
            except grpc.RpcError as rpc_error:
                error = self._error(rpc_error)
            if not isinstance(error, TemporalUnavailableError) or time.monotonic() + error.retry_after > budget:
                raise error from None
            await asyncio.sleep(error.retry_after)

    async def _stream(
        self, method: str, request: ProtoMessage, reply: type[T], timeout: float | None = None
    ) -> AsyncIterator[T]:
        """A server stream (``timeout``: for all of it, none by default); a broken one raises
        (ServerUnreachableError, ...) rather than just ending."""
        call = self._open().unary_stream(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,  # type: ignore[attr-defined]
        )
        stream = call(request, timeout=timeout, metadata=self._metadata)
        try:
            async for item in stream:
                yield item
        except grpc.RpcError as rpc_error:
            raise self._error(rpc_error) from None
        finally:
            stream.cancel()

    async def _pages(self, fetch: Callable[[str], Any]) -> AsyncIterator[Any]:
        token = ""
        while True:
            page: Page = await fetch(token)
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return

    # -- agent executions ------------------------------------------------------------------

    async def create_agent_execution(
        self, *, agent: str, message: str, runtime_env: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> AgentExecution:
        request = agent_execution_pb2.CreateAgentExecutionRequest(
            agent=agent, message=message, runtime_env=dict(runtime_env or {})
        )
        reply = await self._unary(_AEX + "Create", request, agent_execution_pb2.AgentExecution, timeout)
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
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        request = agent_execution_pb2.ListAgentExecutionsRequest(
            phase=_phase(phase), page_size=page_size, page_token=page_token
        )
        reply = await self._unary(_AEX + "List", request, agent_execution_pb2.ListAgentExecutionsResponse, timeout)
        return Page(tuple(AgentExecution.from_proto(m) for m in reply.executions), reply.next_page_token)

    def list_agent_executions(
        self, *, phase: Phase | str | None = None, page_size: int = 100
    ) -> AsyncIterator[AgentExecution]:
        """Every agent execution (newest first), page by page as the iteration goes."""
        return self._pages(
            lambda token: self.list_agent_executions_page(phase=phase, page_size=page_size, page_token=token)
        )

    async def watch_agent_execution(self, id: str, *, timeout: float | None = None) -> AsyncIterator[AgentExecution]:
        """The execution now, then after each change; ends after a terminal phase."""
        request = agent_execution_pb2.WatchAgentExecutionRequest(id=id)
        async for m in self._stream(_AEX + "Watch", request, agent_execution_pb2.AgentExecution, timeout):
            yield AgentExecution.from_proto(m)

    # -- workflows -------------------------------------------------------------------------

    async def create_workflow(self, document: str, *, timeout: float | None = None) -> Workflow:
        request = workflow_pb2.CreateWorkflowRequest(document=document)
        return Workflow.from_proto(await self._unary(_WF + "Create", request, workflow_pb2.Workflow, timeout))

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

    # -- workflow executions ---------------------------------------------------------------

    async def create_workflow_execution(
        self, *, workflow: str, input: str = "", timeout: float | None = None
    ) -> WorkflowExecution:
        request = workflow_execution_pb2.CreateWorkflowExecutionRequest(workflow=workflow, input=input)
        reply = await self._unary(_WEX + "Create", request, workflow_execution_pb2.WorkflowExecution, timeout)
        return WorkflowExecution.from_proto(reply)

    async def get_workflow_execution(self, id: str, *, timeout: float | None = None) -> WorkflowExecution:
        request = workflow_execution_pb2.GetWorkflowExecutionRequest(id=id)
        reply = await self._unary(_WEX + "Get", request, workflow_execution_pb2.WorkflowExecution, timeout)
        return WorkflowExecution.from_proto(reply)

    async def list_workflow_executions_page(
        self,
        *,
        phase: Phase | str | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        request = workflow_execution_pb2.ListWorkflowExecutionsRequest(
            phase=_phase(phase), page_size=page_size, page_token=page_token
        )
        reply = await self._unary(
            _WEX + "List", request, workflow_execution_pb2.ListWorkflowExecutionsResponse, timeout
        )
        return Page(tuple(WorkflowExecution.from_proto(m) for m in reply.executions), reply.next_page_token)

    def list_workflow_executions(
        self, *, phase: Phase | str | None = None, page_size: int = 100
    ) -> AsyncIterator[WorkflowExecution]:
        return self._pages(
            lambda token: self.list_workflow_executions_page(phase=phase, page_size=page_size, page_token=token)
        )

    async def watch_workflow_execution(
        self, id: str, *, timeout: float | None = None
    ) -> AsyncIterator[WorkflowExecution]:
        """The execution now, then after each change (tasks too); ends after a terminal phase."""
        request = workflow_execution_pb2.WatchWorkflowExecutionRequest(id=id)
        async for m in self._stream(_WEX + "Watch", request, workflow_execution_pb2.WorkflowExecution, timeout):
            yield WorkflowExecution.from_proto(m)

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
        watch = self.watch_workflow_execution(id) if id.startswith("wex-") else self.watch_agent_execution(id)
        last: AgentExecution | WorkflowExecution | None = None
        try:
            async with asyncio.timeout(timeout):
                async for last in watch:
                    if last.phase in wanted:
                        return last
        except TimeoutError:
            state = f"still {last.phase}" if last else "no answer"
            raise WaitTimeoutError(f"{id} not {'/'.join(sorted(wanted))} after {timeout:g} s ({state})") from None
        assert last is not None  # a Watch sends the current state first
        raise PhaseNotReachedError(f"{id} ended {last.phase}: {last.error or 'no error'}", execution=last)


def _phase(phase: Phase | str | None) -> common_pb2.ExecutionPhase:
    return common_pb2.EXECUTION_PHASE_UNSPECIFIED if not phase else phase_to_proto(phase)
