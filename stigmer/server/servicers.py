"""grpc.aio servicers for the stigmer.v1 execution and workflow services.

Each method only translates: request -> controller call -> protobuf. Validation, persistence and
the "is Temporal there?" question live in the controllers; error mapping lives in ``errors``.
Reads call the controllers directly on the loop: they are single indexed SQLite queries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypeVar

import grpc

from stigmer.api import (
    agent_execution_pb2,
    agent_execution_pb2_grpc,
    workflow_execution_pb2,
    workflow_execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from stigmer.controllers import AgentExecutionController, WorkflowController, WorkflowExecutionController
from stigmer.server import convert
from stigmer.server.errors import grpc_errors

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


@asynccontextmanager
async def closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a controller's watch as soon as the stream ends, however it ends.

    ``async for`` does not close the iterator when *our* generator is closed mid-loop (the
    client went away); the watch would keep its store subscription until garbage collection.
    """
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class AgentExecutionServicer(agent_execution_pb2_grpc.AgentExecutionServiceServicer):
    def __init__(self, controller: AgentExecutionController) -> None:
        self._controller = controller

    @grpc_errors
    async def Create(
        self, request: agent_execution_pb2.CreateAgentExecutionRequest, context: Context
    ) -> agent_execution_pb2.AgentExecution:
        record = await self._controller.create(
            agent=request.agent,
            message=request.message,
            runtime_env=dict(request.runtime_env),
            request_id=request.request_id,
        )
        return convert.agent_execution_to_proto(record)

    @grpc_errors
    async def Get(
        self, request: agent_execution_pb2.GetAgentExecutionRequest, context: Context
    ) -> agent_execution_pb2.AgentExecution:
        return convert.agent_execution_to_proto(self._controller.get(request.id))

    @grpc_errors
    async def List(
        self, request: agent_execution_pb2.ListAgentExecutionsRequest, context: Context
    ) -> agent_execution_pb2.ListAgentExecutionsResponse:
        records, next_token = self._controller.list(
            phase=convert.phase_filter(request.phase),
            agent=request.agent,
            parent_id=request.parent_id,
            created_after=convert.created_after(request),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return agent_execution_pb2.ListAgentExecutionsResponse(
            executions=[convert.agent_execution_to_proto(r) for r in records], next_page_token=next_token
        )

    @grpc_errors
    async def Watch(
        self, request: agent_execution_pb2.WatchAgentExecutionRequest, context: Context
    ) -> AsyncIterator[agent_execution_pb2.AgentExecution]:
        async with closing(self._controller.watch(request.id)) as records:
            async for record in records:
                yield convert.agent_execution_to_proto(record)

    @grpc_errors
    async def Cancel(
        self, request: agent_execution_pb2.CancelAgentExecutionRequest, context: Context
    ) -> agent_execution_pb2.AgentExecution:
        record = await self._controller.cancel(request.id, reason=request.reason, requested_by=request.requested_by)
        return convert.agent_execution_to_proto(record)

    @grpc_errors
    async def Delete(
        self, request: agent_execution_pb2.DeleteAgentExecutionRequest, context: Context
    ) -> agent_execution_pb2.AgentExecution:
        return convert.agent_execution_to_proto(await self._controller.delete(request.id, force=request.force))


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, controller: WorkflowController) -> None:
        self._controller = controller

    @grpc_errors
    async def Create(self, request: workflow_pb2.CreateWorkflowRequest, context: Context) -> workflow_pb2.Workflow:
        return convert.workflow_to_proto(await self._controller.create(request.document, request_id=request.request_id))

    @grpc_errors
    async def Validate(
        self, request: workflow_pb2.ValidateWorkflowRequest, context: Context
    ) -> workflow_pb2.ValidationResult:
        return convert.validation_to_proto(await self._controller.validate(request.document))

    @grpc_errors
    async def Get(self, request: workflow_pb2.GetWorkflowRequest, context: Context) -> workflow_pb2.Workflow:
        return convert.workflow_to_proto(self._controller.get(request.id_or_name))

    @grpc_errors
    async def List(
        self, request: workflow_pb2.ListWorkflowsRequest, context: Context
    ) -> workflow_pb2.ListWorkflowsResponse:
        records, next_token = self._controller.list(page_size=request.page_size, page_token=request.page_token)
        return workflow_pb2.ListWorkflowsResponse(
            workflows=[convert.workflow_to_proto(r) for r in records], next_page_token=next_token
        )

    @grpc_errors
    async def Delete(self, request: workflow_pb2.DeleteWorkflowRequest, context: Context) -> workflow_pb2.Workflow:
        return convert.workflow_to_proto(self._controller.delete(request.id_or_name))


class WorkflowExecutionServicer(workflow_execution_pb2_grpc.WorkflowExecutionServiceServicer):
    def __init__(self, controller: WorkflowExecutionController) -> None:
        self._controller = controller

    @grpc_errors
    async def Create(
        self, request: workflow_execution_pb2.CreateWorkflowExecutionRequest, context: Context
    ) -> workflow_execution_pb2.WorkflowExecution:
        record = await self._controller.create(
            workflow=request.workflow, input=request.input, request_id=request.request_id
        )
        return convert.workflow_execution_to_proto(record)

    @grpc_errors
    async def Get(
        self, request: workflow_execution_pb2.GetWorkflowExecutionRequest, context: Context
    ) -> workflow_execution_pb2.WorkflowExecution:
        return convert.workflow_execution_to_proto(self._controller.get(request.id))

    @grpc_errors
    async def List(
        self, request: workflow_execution_pb2.ListWorkflowExecutionsRequest, context: Context
    ) -> workflow_execution_pb2.ListWorkflowExecutionsResponse:
        records, next_token = self._controller.list(
            phase=convert.phase_filter(request.phase),
            workflow=request.workflow,
            created_after=convert.created_after(request),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return workflow_execution_pb2.ListWorkflowExecutionsResponse(
            executions=[convert.workflow_execution_to_proto(r) for r in records], next_page_token=next_token
        )

    @grpc_errors
    async def Watch(
        self, request: workflow_execution_pb2.WatchWorkflowExecutionRequest, context: Context
    ) -> AsyncIterator[workflow_execution_pb2.WorkflowExecution]:
        async with closing(self._controller.watch(request.id)) as records:
            async for record in records:
                yield convert.workflow_execution_to_proto(record)

    @grpc_errors
    async def Cancel(
        self, request: workflow_execution_pb2.CancelWorkflowExecutionRequest, context: Context
    ) -> workflow_execution_pb2.WorkflowExecution:
        record = await self._controller.cancel(request.id, reason=request.reason, requested_by=request.requested_by)
        return convert.workflow_execution_to_proto(record)

    @grpc_errors
    async def Delete(
        self, request: workflow_execution_pb2.DeleteWorkflowExecutionRequest, context: Context
    ) -> workflow_execution_pb2.WorkflowExecution:
        return convert.workflow_execution_to_proto(await self._controller.delete(request.id, force=request.force))
