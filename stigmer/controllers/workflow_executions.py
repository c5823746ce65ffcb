"""WorkflowExecutionController: run stored, valid workflows; read and follow their executions.

Same create flow as agent executions (see agent_executions.py): check the input, make sure a
creator is there, persist, start, and remove the record again if the start fails.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator

from stigmer import store as st
from stigmer.store import Store, Workflow, WorkflowExecution
from stigmer.temporal import workflowdoc
from stigmer.temporal.creators import WorkflowExecutionCreator

from . import validation as check
from .availability import Availability, require, start_or_forget
from .errors import FailedPrecondition, InvalidArgument, NotFound
from .watch import DEFAULT_RECHECK_INTERVAL, follow

KIND = "workflow execution"
PREFIX = "wex"
# Longer than any id or name can be: a longer reference cannot match anything.
MAX_WORKFLOW_REF_BYTES = 256


class WorkflowExecutionController:
    def __init__(
        self,
        *,
        store: Store,
        availability: Availability,
        start_timeout: float = 10.0,
        watch_recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
    ) -> None:
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        self._store = store
        self._availability = availability
        self._start_timeout = start_timeout
        self._recheck = watch_recheck_interval
        self._creator: WorkflowExecutionCreator | None = None  # see AgentExecutionController._creator

    def set_creator(self, creator: WorkflowExecutionCreator | None) -> None:
        self._creator = creator

    @property
    def creator(self) -> WorkflowExecutionCreator | None:
        return self._creator

    async def create(self, *, workflow: str, input: str = "") -> WorkflowExecution:
        check.check_size("input", input, max_bytes=check.MAX_TEXT_BYTES)
        ref = check.check_size("workflow", workflow, max_bytes=MAX_WORKFLOW_REF_BYTES)
        check.check_required("workflow", ref, what="a workflow id 'wf-...' or name")
        try:
            workflowdoc.parse_input(input)
        except ValueError as exc:
            raise InvalidArgument("input", str(exc).removeprefix("input: ")) from None
        stored = self._workflow(ref)
        tasks = _runnable_tasks(stored)
        # The workflow reads both back in one payload when it starts.
        check.check_encoded_size("input", [input, stored.document], what="the input and the workflow's document")
        creator = await require(lambda: self._creator, self._availability, what="workflow execution creator")
        try:
            record = self._store.create_workflow_execution(workflow=stored, input=input, task_names_kinds=tasks)
        except st.NotFound:
            raise NotFound("workflow", check.shown(ref)) from None
        await start_or_forget(
            creator,
            id=record.id,
            timeout=self._start_timeout,
            delete=self._store.delete_workflow_execution,
            availability=self._availability,
        )
        return self._read(record.id)

    def get(self, id: str) -> WorkflowExecution:
        return self._read(check.check_id(PREFIX, id))

    def list(
        self, *, phase: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[WorkflowExecution], str]:
        wanted = check.parse_phase(phase)
        size = check.check_page_size(page_size)
        return check.list_page(
            lambda: self._store.list_workflow_executions(phase=wanted, page_size=size, page_token=page_token)
        )

    def watch(self, id: str) -> AsyncIterator[WorkflowExecution]:
        """The record now, then every change; ends after a terminal phase. NotFound raised here, at once."""
        self.get(id)
        return follow(self._store, kind=st.WORKFLOW_EXECUTION, id=id, read=self._read, recheck_interval=self._recheck)

    def _workflow(self, ref: str) -> Workflow:
        try:
            return self._store.get_workflow(ref)
        except st.NotFound:
            raise NotFound("workflow", check.shown(ref)) from None

    def _read(self, id: str) -> WorkflowExecution:
        try:
            return self._store.get_workflow_execution(id)
        except st.NotFound:
            raise NotFound(KIND, id) from None


def _runnable_tasks(workflow: Workflow) -> list[tuple[str, str]]:
    """(name, kind) of each task; FailedPrecondition if the stored workflow cannot run."""
    if not workflow.valid:
        errors = "; ".join(workflow.validation_errors[:3]) or "no details recorded"
        more = f" (and {len(workflow.validation_errors) - 3} more)" if len(workflow.validation_errors) > 3 else ""
        raise FailedPrecondition(
            f"workflow {workflow.name!r} ({workflow.id}) failed validation and cannot be executed: {errors}{more}"
        )
    try:
        document = workflowdoc.parse(workflow.document)
    except workflowdoc.InvalidDocument as exc:
        # Stored as valid under older rules: say so rather than fail later inside Temporal.
        raise FailedPrecondition(
            f"workflow {workflow.name!r} ({workflow.id}) no longer passes validation: {exc}"
        ) from None
    return [(task.name, task.kind) for task in document.tasks]
