"""The three Temporal workflows. Deterministic code only: all I/O happens in activities.

A workflow *completes* once the execution's terminal phase is recorded in the store, including
when the agent or a task failed (that failure is data, stored on the record). A Temporal-level
failure means the bookkeeping itself broke (the store kept failing, a timeout ran out); the record
is then left unfinished for the reconciler, and a fresh start is allowed (reuse policy
ALLOW_DUPLICATE_FAILED_ONLY) and safe because every step is idempotent.

Timeouts: each activity has a start-to-close timeout and a bounded retry policy; run timeouts are
larger than the worst case of the activities they wrap (checked by `worst_case`, in the tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, TimeoutError
from temporalio.exceptions import CancelledError as TemporalCancelledError

with workflow.unsafe.imports_passed_through():
    from stigmer.temporal import names
    from stigmer.temporal.payloads import (
        AgentExecutionInput,
        AgentExecutionResult,
        AgentExecutionView,
        CancelExecutionInput,
        CompleteAgentExecutionInput,
        CompleteWorkflowExecutionInput,
        CreateStepAgentExecutionInput,
        FailExecutionInput,
        RunAgentInput,
        SetTaskStatusInput,
        ValidationInput,
        WorkflowExecutionInput,
        WorkflowExecutionResult,
        WorkflowExecutionView,
    )
    from stigmer.workflows import jsontext, templating, workflowdoc
    from stigmer.workflows.limits import TEXT_BUDGET_BYTES, encoded_size
    from stigmer.workflows.workflowdoc import ValidationResult

T = TypeVar("T")

_TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")  # the store's terminal Phase values

# Store activities: quick writes. Retried on anything but a missing record, for about four minutes
# of backoff: long enough to ride out a PostgreSQL restart or failover (its calls fail fast while
# it is away), after which the execution finishes as if nothing happened.
STORE_ACTIVITY_TIMEOUT = timedelta(seconds=10)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=30,
    non_retryable_error_types=["NotFound"],
)

# Agent runs: long, so they heartbeat; a deliberate agent failure is never retried.
AGENT_ACTIVITY_TIMEOUT = timedelta(minutes=10)
AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=5)
AGENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    # Every reconnection stops the workers, and an agent running then loses that attempt (cut
    # after the graceful shutdown, or its completion lost). The chaos soak saw three attempts
    # used up by faults within 20 s in 1 of 10 persisted runs; five keep the worst case (about
    # 55 min) inside the 1 h run timeout.
    maximum_attempts=5,
    non_retryable_error_types=[names.AGENT_FAILURE_ERROR_TYPE, "NotFound"],
)

VALIDATION_ACTIVITY_TIMEOUT = timedelta(seconds=10)
VALIDATION_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)


def worst_case(timeout: timedelta, retry: RetryPolicy) -> timedelta:
    """Longest an activity can take with its retries: every attempt times out, full backoff."""
    attempts = retry.maximum_attempts
    if attempts <= 0:
        raise ValueError("unbounded retry policy: no worst case")
    total = timeout * attempts
    interval = retry.initial_interval
    cap = retry.maximum_interval or retry.initial_interval * 100
    for _ in range(attempts - 1):
        total += min(interval, cap)
        interval = interval * retry.backoff_coefficient
    return total


# mark-started + run-agent + complete-or-fail, all at their worst: about 73 minutes.
AGENT_EXECUTION_WORST_CASE = 2 * worst_case(STORE_ACTIVITY_TIMEOUT, STORE_RETRY) + worst_case(
    AGENT_ACTIVITY_TIMEOUT, AGENT_RETRY
)
AGENT_EXECUTION_RUN_TIMEOUT = timedelta(hours=2)
VALIDATION_RUN_TIMEOUT = timedelta(minutes=1)
# The workflow execution gets no run timeout: it is as long as its document says (waits of up to
# a day per task), and each of its steps is bounded by its own timeout.


def _failure_text(err: BaseException) -> str:
    """A one-line reason for the store, from an activity or child workflow failure."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        if cause.type in (names.AGENT_FAILURE_ERROR_TYPE, None, ""):
            return cause.message
        return f"{cause.type}: {cause.message}"
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower().replace("_", "-") if cause.type is not None else "unknown"
        return f"timed out ({kind} timeout)"
    return str(cause)


def _cancelled(err: BaseException) -> bool:
    """The workflow was cancelled: raised by the await it was in (a timer, an activity, a child)."""
    if isinstance(err, asyncio.CancelledError):
        return True
    return isinstance(err, ActivityError | ChildWorkflowError) and isinstance(err.cause, TemporalCancelledError)


#: What a workflow catches to find out it was cancelled (see _cancelled).
_INTERRUPTED = (asyncio.CancelledError, ActivityError, ChildWorkflowError)


async def _outcome(handle: workflow.ActivityHandle[T] | workflow.ChildWorkflowHandle[Any, T]) -> T:
    """What the agent (or the step) really did, even if the workflow is cancelled meanwhile.

    A plain ``await`` would raise CancelledError and drop an outcome that reached the workflow in
    the same workflow task as the cancel (the SDK lets the cancel win: the agent had finished
    first, yet its reply or its failure is lost). Shielded, a cancel only asks it to stop: a
    finished one keeps its result, a running one ends in its cancellation (ActivityError /
    ChildWorkflowError caused by CancelledError), which the caller treats as the cancel.
    """
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        handle.cancel()  # a no-op for one that is done
        return await handle


async def _recorded(call: Awaitable[T]) -> T:
    """Record an outcome that is known (the agent's reply, its failure) whatever cancel comes now."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        return await task


async def _store_activity(name: str, arg: Any, result_type: type[T]) -> T:
    """Run a store-writing activity (by name, so its implementation stays out of the sandbox)."""
    result: T = await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=STORE_ACTIVITY_TIMEOUT,
        retry_policy=STORE_RETRY,
    )
    return result


def _output_json(value: Any) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


#: What values set at run time (and a rendered agent message) may grow to, encoded for Temporal.
#: A document under its own limit can still grow without bound at run time (``{"b": "${a}${a}"}``
#: doubles per task); past a payload's 2 MiB Temporal refuses the next activity and the
#: execution could never finish. Half the text budget leaves room for the rest of the payload.
MAX_RUNTIME_TEXT_BYTES = TEXT_BUDGET_BYTES // 2


def _check_runtime_size(what: str, text: str) -> None:
    size = encoded_size(text)
    if size > MAX_RUNTIME_TEXT_BYTES:
        raise _TaskFailed(f"{what} grew to {size} bytes once encoded, over the limit of {MAX_RUNTIME_TEXT_BYTES}")


@workflow.defn(name=names.AGENT_EXECUTION_WORKFLOW)
class AgentExecutionWorkflow:
    """Mark IN_PROGRESS, run the agent, record COMPLETED with the replies or FAILED with the error.

    Cancelled (stigmer's Cancel, or its parent's): the agent's activity hears it through its next
    heartbeat and stops, the workflow waits for that, records CANCELLED and returns normally.
    """

    @workflow.run
    async def run(self, input: AgentExecutionInput) -> AgentExecutionResult:
        try:
            return await self._run(input)
        except _INTERRUPTED as err:
            if not _cancelled(err):
                raise
        return await _store_activity(
            names.CANCEL_AGENT_EXECUTION, CancelExecutionInput(execution_id=input.execution_id), AgentExecutionResult
        )

    async def _run(self, input: AgentExecutionInput) -> AgentExecutionResult:
        view = await _store_activity(names.MARK_AGENT_EXECUTION_STARTED, input.execution_id, AgentExecutionView)
        if view.phase in _TERMINAL:  # a re-run after the result was recorded: report, change nothing
            return AgentExecutionResult(
                execution_id=view.execution_id, phase=view.phase, replies=view.replies, error=view.error
            )
        agent = workflow.start_activity(
            names.RUN_AGENT,
            RunAgentInput(
                execution_id=view.execution_id,
                agent=view.agent,
                message=view.message,
                runtime_env=view.runtime_env,
            ),
            result_type=list[str],
            start_to_close_timeout=AGENT_ACTIVITY_TIMEOUT,
            heartbeat_timeout=AGENT_HEARTBEAT_TIMEOUT,
            retry_policy=AGENT_RETRY,
            # A cancel waits until the agent has stopped, so CANCELLED means "nothing runs".
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            replies = await _outcome(agent)
        except ActivityError as err:
            if _cancelled(err):
                raise
            return await _recorded(
                _store_activity(
                    names.FAIL_AGENT_EXECUTION,
                    FailExecutionInput(execution_id=view.execution_id, error=_failure_text(err)),
                    AgentExecutionResult,
                )
            )
        return await _recorded(
            _store_activity(
                names.COMPLETE_AGENT_EXECUTION,
                CompleteAgentExecutionInput(execution_id=view.execution_id, replies=replies),
                AgentExecutionResult,
            )
        )


class _TaskFailed(Exception):
    """A task of the document failed; the execution fails naming it."""


class _StepCancelled(_TaskFailed):
    """An agent step ended CANCELLED: its parent's cancel, or the step's own (then it failed the task)."""


class _CancelRequested(Exception):
    """Somebody asked to cancel this execution (seen in the store between two tasks)."""


@workflow.defn(name=names.WORKFLOW_EXECUTION_WORKFLOW)
class WorkflowExecutionWorkflow:
    """Run a workflow document's tasks in order, recording each task's status and output."""

    def __init__(self) -> None:
        self._execution_id = ""
        self._agent_task_queue = ""
        self._input: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}

    @workflow.run
    async def run(self, input: WorkflowExecutionInput) -> WorkflowExecutionResult:
        self._execution_id = input.execution_id
        self._agent_task_queue = input.agent_task_queue
        try:
            return await self._run(input)
        except _CancelRequested:
            pass
        except _INTERRUPTED as err:
            if not _cancelled(err):
                raise
        return await self._cancel(only_if_requested=False)

    async def _run(self, input: WorkflowExecutionInput) -> WorkflowExecutionResult:
        view = await self._store_activity(
            names.MARK_WORKFLOW_EXECUTION_STARTED, input.execution_id, WorkflowExecutionView
        )
        if view.phase in _TERMINAL:
            return WorkflowExecutionResult(
                execution_id=view.execution_id, phase=view.phase, output=view.output, error=view.error
            )
        try:
            document = workflowdoc.parse(view.document)
            self._input = jsontext.parse_input(view.input)
        except ValueError as exc:  # InvalidDocument is a ValueError too
            return await self._fail(f"cannot run: {exc}", failed_task="")
        for index, task in enumerate(document.tasks):
            if await self._set_status(task.name, "RUNNING"):
                raise _CancelRequested
            try:
                output = await self._run_task(task)
            except _TaskFailed as exc:
                if isinstance(exc, _StepCancelled):
                    outcome = await self._cancel(only_if_requested=True)
                    if outcome.phase == "CANCELLED":  # cancelled with this execution
                        return outcome
                await self._set_status(task.name, "FAILED", error=str(exc))
                for later in document.tasks[index + 1 :]:
                    await self._set_status(later.name, "SKIPPED")
                return await self._fail(f"task {task.name!r} failed: {exc}", failed_task=task.name)
            self._outputs[task.name] = output
            await self._set_status(task.name, "COMPLETED", output=_output_json(output))
        output = _output_json(self._values)
        result: WorkflowExecutionResult = await self._store_activity(
            names.COMPLETE_WORKFLOW_EXECUTION,
            CompleteWorkflowExecutionInput(execution_id=self._execution_id, output=output),
            WorkflowExecutionResult,
        )
        return result

    async def _run_task(self, task: workflowdoc.Task) -> Any:
        scope = templating.make_scope(input=self._input, values=self._values, outputs=self._outputs)
        try:
            if isinstance(task, workflowdoc.SetTask):
                rendered: dict[str, Any] = templating.render_value(task.values, scope)
                _check_runtime_size("the workflow's values", _output_json({**self._values, **rendered}))
                self._values.update(rendered)
                return rendered
            if isinstance(task, workflowdoc.WaitTask):
                if task.seconds > 0:
                    await workflow.sleep(task.seconds, summary=f"task {task.name}")
                return None
            return await self._run_agent_task(task, scope)
        except templating.UnresolvedReference as exc:
            raise _TaskFailed(f"unresolved reference {exc}") from None
        except (ActivityError, ChildWorkflowError) as err:
            if _cancelled(err):
                raise
            raise _TaskFailed(_failure_text(err)) from None

    async def _run_agent_task(self, task: workflowdoc.AgentTask, scope: dict[str, Any]) -> list[str]:
        message = templating.render_text(task.message, scope)
        _check_runtime_size("the agent message", message)
        env = {key: templating.render_text(value, scope) for key, value in task.runtime_env.items()}
        agent_execution_id = await self._store_activity(
            names.CREATE_STEP_AGENT_EXECUTION,
            CreateStepAgentExecutionInput(
                workflow_execution_id=self._execution_id,
                task_name=task.name,
                agent=task.agent,
                message=message,
                runtime_env=env,
            ),
            str,
        )
        step = await workflow.start_child_workflow(
            names.AGENT_EXECUTION_WORKFLOW,
            AgentExecutionInput(execution_id=agent_execution_id),
            id=names.agent_execution_workflow_id(agent_execution_id),
            task_queue=self._agent_task_queue,
            run_timeout=AGENT_EXECUTION_RUN_TIMEOUT,
            result_type=AgentExecutionResult,
        )
        result: AgentExecutionResult = await _outcome(step)
        if result.phase != "COMPLETED":
            failed = _StepCancelled if result.phase == "CANCELLED" else _TaskFailed
            raise failed(f"agent execution {agent_execution_id} {result.phase}: {result.error}")
        return result.replies

    async def _set_status(self, task: str, status: str, *, output: str = "", error: str = "") -> bool:
        """Record a task's status; True if a cancel of this execution has been requested."""
        requested: bool = await self._store_activity(
            names.SET_TASK_STATUS,
            SetTaskStatusInput(execution_id=self._execution_id, task=task, status=status, output=output, error=error),
            bool,
        )
        return requested

    async def _cancel(self, *, only_if_requested: bool) -> WorkflowExecutionResult:
        """Record CANCELLED (the running task CANCELLED, the rest SKIPPED, unfinished steps cancelled)."""
        result: WorkflowExecutionResult = await self._store_activity(
            names.CANCEL_WORKFLOW_EXECUTION,
            CancelExecutionInput(execution_id=self._execution_id, only_if_requested=only_if_requested),
            WorkflowExecutionResult,
        )
        return result

    async def _fail(self, error: str, *, failed_task: str) -> WorkflowExecutionResult:
        result = await self._store_activity(
            names.FAIL_WORKFLOW_EXECUTION,
            FailExecutionInput(execution_id=self._execution_id, error=error),
            WorkflowExecutionResult,
        )
        return WorkflowExecutionResult(
            execution_id=result.execution_id,
            phase=result.phase,
            output=result.output,
            error=result.error,
            failed_task=failed_task,
        )

    async def _store_activity(self, name: str, arg: Any, result_type: type[T]) -> T:
        return await _store_activity(name, arg, result_type)


@workflow.defn(name=names.WORKFLOW_VALIDATION_WORKFLOW)
class WorkflowValidationWorkflow:
    """Validate a document on the validation worker; returns VALID or INVALID with errors."""

    @workflow.run
    async def run(self, input: ValidationInput) -> ValidationResult:
        errors = await workflow.execute_activity(
            names.VALIDATE_WORKFLOW_DOCUMENT,
            input.document,
            result_type=list[str],
            start_to_close_timeout=VALIDATION_ACTIVITY_TIMEOUT,
            retry_policy=VALIDATION_RETRY,
        )
        return ValidationResult(valid=not errors, errors=errors)
