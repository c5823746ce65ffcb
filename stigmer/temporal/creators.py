"""Creators: start executions and validate documents through Temporal, with hard deadlines.

Each is a small object built from one client; the connection layer injects them into the
controllers while connected and withdraws them otherwise. Every call has an overall deadline
because the SDK's high-level calls retry internally for 5-10 s when Temporal is down (measured),
and `rpc_timeout` bounds a single attempt only. Running out of time, or Temporal answering
UNAVAILABLE, raises `TemporalUnavailableError`, which the server maps to gRPC UNAVAILABLE.

Starts are idempotent: workflow id = execution id, conflict policy USE_EXISTING (a running
workflow is reused) and reuse policy ALLOW_DUPLICATE_FAILED_ONLY (a workflow that finished is
not started again; one that broke may be). A repeated start is therefore a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from stigmer.errors import TemporalUnavailableError
from stigmer.temporal import names
from stigmer.temporal.diagnose import is_unavailable
from stigmer.temporal.payloads import (
    AgentExecutionInput,
    ValidationInput,
    WorkflowExecutionInput,
)
from stigmer.temporal.workflows import AGENT_EXECUTION_RUN_TIMEOUT, VALIDATION_RUN_TIMEOUT
from stigmer.workflows import workflowdoc
from stigmer.workflows.workflowdoc import ValidationResult

T = TypeVar("T")


# The `timeout` parameters below are the agreed creator API (ASYNC109 prefers callers wrapping
# us in asyncio.timeout): the deadline must cover the SDK's internal retries, so it lives here.
async def with_deadline(call: Awaitable[T], *, timeout: float, what: str) -> T:  # noqa: ASYNC109
    """``call`` within ``timeout`` s; no answer in time, or an RPC error that means no answer
    (diagnose.is_unavailable), raises TemporalUnavailableError saying ``what`` failed."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        raise TemporalUnavailableError(f"{what}: Temporal did not answer within {timeout:g} s") from None
    except RPCError as exc:
        if is_unavailable(exc):
            raise TemporalUnavailableError(
                f"{what}: Temporal is unavailable ({exc.status.name}: {exc.message})"
            ) from exc
        raise


async def _start_once(
    client: Client,
    workflow: str,
    arg: object,
    *,
    workflow_id: str,
    task_queue: str,
    run_timeout: timedelta | None,
    timeout: float,  # noqa: ASYNC109
    what: str,
) -> None:
    # WorkflowAlreadyStartedError: the workflow already ran to completion, so the reuse policy
    # refused a second run -- exactly the no-op a repeated start should be.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await with_deadline(
            client.start_workflow(
                workflow,
                arg,
                id=workflow_id,
                task_queue=task_queue,
                run_timeout=run_timeout,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                rpc_timeout=timedelta(seconds=timeout),
            ),
            timeout=timeout,
            what=what,
        )


async def _cancel_once(client: Client, *, workflow_id: str, timeout: float, what: str) -> bool:  # noqa: ASYNC109
    """Request cancellation of a workflow; False if Temporal has no running workflow of that id."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        await with_deadline(handle.cancel(rpc_timeout=timedelta(seconds=timeout)), timeout=timeout, what=what)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # never started, lost, or already closed
            return False
        raise
    return True


class _Bound:
    """Built from one client (and the task queues); injected while that client is connected.

    When the connection is judged lost, :meth:`abandon` ends the calls still in flight on it at
    once with TemporalUnavailableError: on a dead path (a black hole, a proxy holding the connection)
    they would otherwise wait out their whole deadline -- the SDK's keepalive takes 45 s to give
    up on a silent connection -- and answer the client late, or fail after the reconciler of the
    next connection already restarted their workflow.
    """

    def __init__(self, client: Client, *, queues: names.TaskQueues) -> None:
        self._client = client
        self._queues = queues
        self._abandoned = False
        self._inflight: set[asyncio.Future[object]] = set()

    @property
    def client(self) -> Client:
        """The client this was built with (lets a failure report name the connection it saw fail)."""
        return self._client

    def abandon(self) -> None:
        """The connection is gone: fail the calls in flight now, and any later one at once."""
        self._abandoned = True
        for call in list(self._inflight):
            call.cancel()

    async def _call(self, call: Awaitable[T], *, what: str) -> T:
        if self._abandoned:
            if asyncio.iscoroutine(call):
                call.close()  # never started: no "was never awaited" warning
            raise TemporalUnavailableError(f"{what}: the connection to Temporal was lost")
        task: asyncio.Future[T] = asyncio.ensure_future(call)
        self._inflight.add(task)  # type: ignore[arg-type]
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._abandoned and not (current is not None and current.cancelling()):
                raise TemporalUnavailableError(f"{what}: the connection to Temporal was lost mid-call") from None
            raise
        finally:
            self._inflight.discard(task)


class AgentExecutionCreator(_Bound):
    """Starts (and cancels) the agent execution workflow of a stored agent execution."""

    async def cancel(self, execution_id: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        """Ask its workflow to stop; False if Temporal has no running workflow for it."""
        what = f"cancel agent execution {execution_id}"
        workflow_id = names.agent_execution_workflow_id(execution_id)
        return await self._call(
            _cancel_once(self._client, workflow_id=workflow_id, timeout=timeout, what=what), what=what
        )

    async def start(self, execution_id: str, *, timeout: float) -> str:  # noqa: ASYNC109
        """Start (or find already started) the workflow; returns its Temporal workflow id."""
        workflow_id = names.agent_execution_workflow_id(execution_id)
        start = _start_once(
            self._client,
            names.AGENT_EXECUTION_WORKFLOW,
            AgentExecutionInput(execution_id=execution_id),
            workflow_id=workflow_id,
            task_queue=self._queues.agent_execution,
            run_timeout=AGENT_EXECUTION_RUN_TIMEOUT,
            timeout=timeout,
            what=f"start agent execution {execution_id}",
        )
        await self._call(start, what=f"start agent execution {execution_id}")
        return workflow_id


class WorkflowExecutionCreator(_Bound):
    """Starts (and cancels) the workflow execution workflow of a stored workflow execution."""

    async def cancel(self, execution_id: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        """Ask its workflow to stop (it cancels its running step); False if Temporal has none running."""
        what = f"cancel workflow execution {execution_id}"
        workflow_id = names.workflow_execution_workflow_id(execution_id)
        return await self._call(
            _cancel_once(self._client, workflow_id=workflow_id, timeout=timeout, what=what), what=what
        )

    async def start(self, execution_id: str, *, timeout: float) -> str:  # noqa: ASYNC109
        """Start (or find already started) the workflow; returns its Temporal workflow id."""
        workflow_id = names.workflow_execution_workflow_id(execution_id)
        start = _start_once(
            self._client,
            names.WORKFLOW_EXECUTION_WORKFLOW,
            WorkflowExecutionInput(execution_id=execution_id, agent_task_queue=self._queues.agent_execution),
            workflow_id=workflow_id,
            task_queue=self._queues.workflow_execution,
            run_timeout=None,  # as long as its document says; see workflows.py
            timeout=timeout,
            what=f"start workflow execution {execution_id}",
        )
        await self._call(start, what=f"start workflow execution {execution_id}")
        return workflow_id


class WorkflowValidator(_Bound):
    """Validates a workflow document on the validation worker, synchronously for the caller."""

    async def validate(self, document: str, *, timeout: float) -> ValidationResult:  # noqa: ASYNC109
        """VALID or INVALID with errors. TemporalUnavailableError if no answer within `timeout` s.

        An oversized document is rejected here, without a round trip: Temporal refuses payloads
        over 2 MiB with an unhelpful error, and the size rule needs no worker.
        """
        if workflowdoc.too_large(document):
            return ValidationResult(valid=False, errors=workflowdoc.validate(document))
        # Validations are not stored, so each gets a fresh id; its run timeout reaps it if the
        # caller gave up before a worker picked it up.
        request_id = uuid.uuid4().hex
        result: ValidationResult = await self._call(
            with_deadline(
                self._client.execute_workflow(
                    names.WORKFLOW_VALIDATION_WORKFLOW,
                    ValidationInput(document=document),
                    id=names.workflow_validation_workflow_id(request_id),
                    task_queue=self._queues.workflow_validation,
                    run_timeout=VALIDATION_RUN_TIMEOUT,
                    result_type=ValidationResult,
                    rpc_timeout=timedelta(seconds=timeout),
                ),
                timeout=timeout,
                what="validate workflow document",
            ),
            what="validate workflow document",
        )
        return result
