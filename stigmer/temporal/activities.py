"""Activities: the only workflow code that touches the store or runs an agent.

Every activity that writes the store is idempotent because the store transitions are: calling
one again after a lost reply (Temporal retries it) finds the record already past that point and
changes nothing. Store calls are synchronous SQLite, so they run in a thread to keep the
worker's event loop (polls, heartbeats) responsive.

Errors: a missing record is non-retryable (retrying cannot make it appear); anything else
raised here is retried by the workflow's retry policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from loguru import logger
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from stigmer.errors import AlreadyExistsError, NotFoundError
from stigmer.store import (
    AGENT_EXECUTION,
    WORKFLOW_EXECUTION,
    AgentExecution,
    Message,
    Store,
    TaskStatus,
    WorkflowExecution,
)
from stigmer.temporal import names
from stigmer.temporal.agents import AgentFailure, AgentRunner
from stigmer.temporal.payloads import (
    AgentExecutionResult,
    AgentExecutionView,
    CancelExecutionInput,
    CompleteAgentExecutionInput,
    CompleteWorkflowExecutionInput,
    CreateStepAgentExecutionInput,
    FailExecutionInput,
    RunAgentInput,
    SetTaskStatusInput,
    WorkflowExecutionResult,
    WorkflowExecutionView,
)
from stigmer.workflows import workflowdoc

# The role stored with the agent's replies (the user's message is stored with role "user").
AGENT_ROLE = "agent"
NOT_FOUND_ERROR_TYPE = "NotFound"
ABANDONED_ERROR_TYPE = "AttemptAbandoned"

T = TypeVar("T")


async def _store_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except NotFoundError as exc:
        # Expected when a create's start reached Temporal but its reply was lost: the caller got
        # UNAVAILABLE and the record was removed (controllers/availability.py). One line here;
        # BENIGN keeps the SDK from logging a WARN with a full traceback for it.
        logger.warning("{}: removed after its create failed? Its workflow ends here", exc)
        raise ApplicationError(
            str(exc), type=NOT_FOUND_ERROR_TYPE, non_retryable=True, category=ApplicationErrorCategory.BENIGN
        ) from exc


def _agent_result(record: AgentExecution) -> AgentExecutionResult:
    return AgentExecutionResult(
        execution_id=record.id,
        phase=record.phase.value,
        replies=[m.text for m in record.messages[1:]],
        error=record.error,
    )


def _workflow_result(record: WorkflowExecution) -> WorkflowExecutionResult:
    return WorkflowExecutionResult(
        execution_id=record.id, phase=record.phase.value, output=record.output, error=record.error
    )


class AgentExecutionActivities:
    """Activities of the agent execution workflow, bound to a store and an agent runner."""

    def __init__(self, *, store: Store, runner: AgentRunner) -> None:
        self._store = store
        self._runner = runner

    def all(self) -> Sequence[Callable[..., Any]]:
        return [self.mark_started, self.run_agent, self.complete, self.fail, self.cancel]

    @activity.defn(name=names.MARK_AGENT_EXECUTION_STARTED)
    async def mark_started(self, execution_id: str) -> AgentExecutionView:
        """PENDING -> IN_PROGRESS; returns the record either way (terminal ones included)."""
        record = await _store_call(self._store.mark_agent_execution_started, execution_id)
        result = _agent_result(record)
        return AgentExecutionView(
            execution_id=record.id,
            agent=record.agent,
            message=record.message,
            runtime_env=dict(record.runtime_env),
            phase=record.phase.value,
            replies=result.replies,
            error=record.error,
        )

    @activity.defn(name=names.RUN_AGENT)
    async def run_agent(self, input: RunAgentInput) -> list[str]:
        """Runs the agent; writes nothing, so a retry simply asks the agent again."""
        try:
            return await self._runner.run(
                agent=input.agent,
                message=input.message,
                runtime_env=input.runtime_env,
                heartbeat=activity.heartbeat,
            )
        except AgentFailure as exc:
            # BENIGN: an agent saying no is an outcome, recorded on the execution; it should not
            # put a WARN line and a traceback in the service log every time.
            raise ApplicationError(
                exc.reason,
                type=names.AGENT_FAILURE_ERROR_TYPE,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            ) from exc
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is None or not (details.not_found or details.timed_out):
                raise  # a requested cancel or a worker shutdown: the SDK reports those quietly
            # Temporal gave this attempt up (it timed out, or a Temporal without persistence
            # restarted and no longer knows it), so nobody reads this outcome. The SDK would log
            # the cancel as a failure, at WARN with a full traceback (seen in the chaos soak).
            reason = "no longer knows" if details.not_found else "timed out"
            raise ApplicationError(
                f"agent run abandoned: Temporal {reason} this attempt",
                type=ABANDONED_ERROR_TYPE,
                category=ApplicationErrorCategory.BENIGN,
            ) from None

    @activity.defn(name=names.COMPLETE_AGENT_EXECUTION)
    async def complete(self, input: CompleteAgentExecutionInput) -> AgentExecutionResult:
        now = time.time()
        replies = [Message(role=AGENT_ROLE, text=text, at=now) for text in input.replies]
        record = await _store_call(self._store.complete_agent_execution, input.execution_id, replies=replies)
        return _agent_result(record)

    @activity.defn(name=names.FAIL_AGENT_EXECUTION)
    async def fail(self, input: FailExecutionInput) -> AgentExecutionResult:
        record = await _store_call(self._store.fail_agent_execution, input.execution_id, error=input.error)
        return _agent_result(record)

    @activity.defn(name=names.CANCEL_AGENT_EXECUTION)
    async def cancel(self, input: CancelExecutionInput) -> AgentExecutionResult:
        """Unfinished -> CANCELLED (the store says by whom); returns the record's terminal state."""
        record = await _store_call(_cancel, self._store, AGENT_EXECUTION, input)
        assert isinstance(record, AgentExecution)
        return _agent_result(record)


class WorkflowExecutionActivities:
    """Activities of the workflow execution workflow, bound to a store."""

    def __init__(self, *, store: Store) -> None:
        self._store = store

    def all(self) -> Sequence[Callable[..., Any]]:
        return [
            self.mark_started,
            self.create_step_agent_execution,
            self.set_task_status,
            self.complete,
            self.fail,
            self.cancel,
        ]

    @activity.defn(name=names.MARK_WORKFLOW_EXECUTION_STARTED)
    async def mark_started(self, execution_id: str) -> WorkflowExecutionView:
        """PENDING -> IN_PROGRESS; returns the execution with its workflow's document."""
        record = await _store_call(self._store.mark_workflow_execution_started, execution_id)
        workflow = await _store_call(self._store.get_workflow, record.workflow_id)
        return WorkflowExecutionView(
            execution_id=record.id,
            document=workflow.document,
            input=record.input,
            phase=record.phase.value,
            output=record.output,
            error=record.error,
        )

    @activity.defn(name=names.CREATE_STEP_AGENT_EXECUTION)
    async def create_step_agent_execution(self, input: CreateStepAgentExecutionInput) -> str:
        """Create (once) the agent execution of an `agent` task; returns its id.

        The id is derived from the workflow execution id and the task name, so a retried
        activity (or a re-run of the whole workflow) finds the record it made before.
        """
        execution_id = names.step_agent_execution_id(input.workflow_execution_id, input.task_name)

        def create() -> str:
            # AlreadyExistsError: an earlier attempt made it (its reply was lost); same inputs, same record.
            with contextlib.suppress(AlreadyExistsError):
                self._store.create_agent_execution(
                    id=execution_id,
                    agent=input.agent,
                    message=input.message,
                    runtime_env=input.runtime_env,
                    parent_id=input.workflow_execution_id,
                )
            return execution_id

        return await _store_call(create)

    @activity.defn(name=names.SET_TASK_STATUS)
    async def set_task_status(self, input: SetTaskStatusInput) -> bool:
        """Move the task forward; True if somebody asked to cancel the execution (the workflow stops)."""
        record = await _store_call(
            self._store.set_task_status,
            input.execution_id,
            input.task,
            TaskStatus(input.status),
            output=input.output,
            error=input.error,
        )
        return record.cancel_requested_at is not None

    @activity.defn(name=names.COMPLETE_WORKFLOW_EXECUTION)
    async def complete(self, input: CompleteWorkflowExecutionInput) -> WorkflowExecutionResult:
        record = await _store_call(self._store.complete_workflow_execution, input.execution_id, output=input.output)
        return _workflow_result(record)

    @activity.defn(name=names.FAIL_WORKFLOW_EXECUTION)
    async def fail(self, input: FailExecutionInput) -> WorkflowExecutionResult:
        record = await _store_call(self._store.fail_workflow_execution, input.execution_id, error=input.error)
        return _workflow_result(record)

    @activity.defn(name=names.CANCEL_WORKFLOW_EXECUTION)
    async def cancel(self, input: CancelExecutionInput) -> WorkflowExecutionResult:
        """Unfinished -> CANCELLED with its running task and steps; returns the record's state
        (still unfinished if only_if_requested and nobody asked)."""
        record = await _store_call(_cancel, self._store, WORKFLOW_EXECUTION, input)
        assert isinstance(record, WorkflowExecution)
        return _workflow_result(record)


def _cancel(store: Store, kind: str, input: CancelExecutionInput) -> AgentExecution | WorkflowExecution:
    if input.only_if_requested:
        current: AgentExecution | WorkflowExecution = (
            store.get_agent_execution(input.execution_id)
            if kind == AGENT_EXECUTION
            else store.get_workflow_execution(input.execution_id)
        )
        if current.cancel_requested_at is None:
            return current
    return store.cancel(kind, input.execution_id)


@activity.defn(name=names.VALIDATE_WORKFLOW_DOCUMENT)
async def validate_workflow_document(document: str) -> list[str]:
    """Validation errors of a workflow document (empty when valid). Pure; safe to retry."""
    # A 1 MiB document takes tens of milliseconds: keep the worker's loop free meanwhile.
    return await asyncio.to_thread(workflowdoc.validate, document)


__all__ = [
    "AGENT_ROLE",
    "AgentExecutionActivities",
    "WorkflowExecutionActivities",
    "validate_workflow_document",
]
