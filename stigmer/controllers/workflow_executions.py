"""WorkflowExecutionController: run stored, valid workflows; read and follow their executions.

Same create flow as agent executions (see agent_executions.py): check the input, make sure a
creator is there, persist, start, and remove the record again if the start fails.
"""

from __future__ import annotations

import builtins

from stigmer import store as st
from stigmer.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from stigmer.store import RequestKey, Workflow, WorkflowExecution
from stigmer.workflows import jsontext, workflowdoc

from . import validation as check
from .executions import ExecutionController
from .ports import Starter

KIND = "workflow execution"
PREFIX = "wex"
# Longer than any id or name can be: a longer reference cannot match anything.
MAX_WORKFLOW_REF_BYTES = 256


class WorkflowExecutionController(ExecutionController[WorkflowExecution, Starter]):
    KIND = KIND
    PREFIX = PREFIX
    LISTENER_KIND = st.WORKFLOW_EXECUTION

    async def create(self, *, workflow: str, input: str = "", request_id: str = "") -> WorkflowExecution:
        check.check_size("input", input, max_bytes=check.MAX_TEXT_BYTES)
        ref = check.check_size("workflow", workflow, max_bytes=MAX_WORKFLOW_REF_BYTES)
        check.check_required("workflow", ref, what="a workflow id 'wf-...' or name")
        request = check.check_request_id(request_id)
        try:
            jsontext.parse_input(input)
        except ValueError as exc:
            raise InvalidArgumentError("input", str(exc).removeprefix("input: ")) from None
        stored = self._workflow(ref)
        tasks = _runnable_tasks(stored)
        # The workflow reads both back in one payload when it starts.
        check.check_encoded_size("input", [input, stored.document], what="the input and the workflow's document")
        # The body is what runs: the workflow as resolved (a name may later mean another one) and the input.
        key = self._request_key(request, {"workflow_id": stored.id, "input": input})

        def admit(key: RequestKey | None) -> tuple[WorkflowExecution, bool]:
            try:
                return self._store.admit_workflow_execution(
                    workflow=stored, input=input, task_names_kinds=tasks, request=key
                )
            except NotFoundError:
                raise NotFoundError("workflow", check.shown(ref)) from None

        return await self._create(key, admit)

    def list(
        self,
        *,
        phase: str = "",
        workflow: str = "",
        created_after: float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[builtins.list[WorkflowExecution], str]:
        """Newest first, filtered by every argument given (``workflow``: its id or name)."""
        wanted = check.parse_phase(phase)
        ref = check.check_size("workflow", workflow, max_bytes=MAX_WORKFLOW_REF_BYTES)
        after = check.check_created_after(created_after)
        return self.list_checked(
            lambda size: self._store.list_workflow_executions(
                phase=wanted, workflow=ref, created_after=after, page_size=size, page_token=page_token
            ),
            page_size=page_size,
        )

    def _workflow(self, ref: str) -> Workflow:
        try:
            return self._store.get_workflow(ref)
        except NotFoundError:
            raise NotFoundError("workflow", check.shown(ref)) from None

    def _fetch(self, id: str) -> WorkflowExecution:
        return self._store.get_workflow_execution(id)


def _runnable_tasks(workflow: Workflow) -> list[tuple[str, str]]:
    """(name, kind) of each task; FailedPreconditionError if the stored workflow cannot run."""
    if not workflow.valid:
        errors = "; ".join(workflow.validation_errors[:3]) or "no details recorded"
        more = f" (and {len(workflow.validation_errors) - 3} more)" if len(workflow.validation_errors) > 3 else ""
        raise FailedPreconditionError(
            f"workflow {workflow.name!r} ({workflow.id}) failed validation and cannot be executed: {errors}{more}"
        )
    try:
        document = workflowdoc.parse(workflow.document)
    except workflowdoc.InvalidDocument as exc:
        # Stored as valid under older rules: say so rather than fail later inside Temporal.
        raise FailedPreconditionError(
            f"workflow {workflow.name!r} ({workflow.id}) no longer passes validation: {exc}"
        ) from None
    return [(task.name, task.kind) for task in document.tasks]
