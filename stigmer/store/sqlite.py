"""``Store``: the public face of the SQLite repository.

Each method is one transaction (see ``Database``) around a function from the per-table modules;
listeners are notified after the commit (see ``base``). Cancel and delete are in ``lifecycle``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from stigmer.errors import AlreadyExistsError

from . import agent_executions, workflow_executions, workflows
from .base import AGENT_EXECUTION, WORKFLOW, WORKFLOW_EXECUTION, Listener
from .base import now as _now
from .db import Database
from .ids import is_valid_id, new_id
from .lifecycle import Execution, ExecutionLifecycle
from .models import AgentExecution, Message, Phase, TaskStatus, Workflow, WorkflowExecution
from .paging import Filter
from .postgres import PgDatabase
from .requests import RequestKey
from .sql import RequestRace
from .urls import SqliteTarget, parse_database_url

T = TypeVar("T")

__all__ = ["AGENT_EXECUTION", "WORKFLOW", "WORKFLOW_EXECUTION", "Execution", "Listener", "Store"]


def _once_more_on_race(create: Callable[[], T]) -> T:
    """A create whose request id another process took between lookup and insert runs once more:
    its lookup then finds that record (PostgreSQL only; SQLite transactions do not overlap)."""
    try:
        return create()
    except RequestRace:
        pass
    try:
        return create()  # the lookup finds the other attempt's record now, if that is what refused it
    except RequestRace as still:
        raise AlreadyExistsError(str(still)) from None  # a genuine conflict (the name is taken)


def _created_after(created_after: float | None) -> list[Filter]:
    return [] if created_after is None else [("created_at > ?", created_after)]


def _id_for(prefix: str, id: str | None) -> str:
    if id is None:
        return new_id(prefix)
    if not is_valid_id(prefix, id):
        raise ValueError(f"id must be '{prefix}-' followed by a 26-character ULID, got {id!r}")
    return id


class Store(ExecutionLifecycle):
    """Agent executions, workflows and workflow executions in ``<data_dir>/stigmer.db``."""

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        """Create the dir and database if needed; StoreError if the file cannot be trusted or written."""
        return cls(database=Database.open(data_dir))

    @classmethod
    def connect(cls, url: str | None, *, data_dir: Path) -> Store:
        """The store STIGMER_DATABASE_URL names (None: SQLite under ``data_dir``); ConfigError if malformed."""
        target = parse_database_url(url, data_dir=data_dir)
        if isinstance(target, SqliteTarget):
            return cls(database=Database.open(target.path.parent, name=target.path.name))
        return cls(database=PgDatabase.open(target.url))

    def count_by_phase(self) -> dict[str, dict[str, int]]:
        """``{AGENT_EXECUTION: {phase: count}, WORKFLOW_EXECUTION: {...}}``, every phase present (0
        when none): one ``GROUP BY phase`` per table in one read, cheap enough for every scrape."""
        with self._db.read("count executions by phase") as conn:
            found = {
                AGENT_EXECUTION: agent_executions.count_by_phase(conn),
                WORKFLOW_EXECUTION: workflow_executions.count_by_phase(conn),
            }
        return {kind: {phase.value: counts.get(phase.value, 0) for phase in Phase} for kind, counts in found.items()}

    # -- agent executions ---------------------------------------------------------------------

    def create_agent_execution(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: dict[str, str] | None = None,
        parent_id: str = "",
        id: str | None = None,
        request: RequestKey | None = None,
    ) -> AgentExecution:
        """A PENDING execution whose messages are just the user's; AlreadyExistsError if ``id`` is taken."""
        return self.admit_agent_execution(
            agent=agent, message=message, runtime_env=runtime_env, parent_id=parent_id, id=id, request=request
        )[0]

    def admit_agent_execution(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: dict[str, str] | None = None,
        parent_id: str = "",
        id: str | None = None,
        request: RequestKey | None = None,
    ) -> tuple[AgentExecution, bool]:
        """(record, created): with ``request``, the live record made with that request id is
        returned instead of a new one (AlreadyExistsError if its body differs)."""
        new = _id_for(agent_executions.PREFIX, id)

        def admit() -> tuple[AgentExecution, bool]:
            with self._db.write(f"create agent execution {new}") as conn:
                now = time.time()
                found = None if request is None else agent_executions.find_request(conn, request, now=now)
                if found is not None:
                    return found, False
                record = agent_executions.insert(
                    conn,
                    id=new,
                    agent=agent,
                    message=message,
                    runtime_env=runtime_env or {},
                    parent_id=parent_id,
                    at=now,
                    request=request,
                )
            self._notify(AGENT_EXECUTION, new)
            return record, True

        return _once_more_on_race(admit)

    def get_agent_execution(self, id: str) -> AgentExecution:
        with self._db.read(f"read agent execution {id}") as conn:
            return agent_executions.get(conn, id)

    def list_agent_executions(
        self,
        *,
        phase: Phase | None = None,
        agent: str = "",
        parent_id: str = "",
        created_after: float | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[AgentExecution], str]:
        """Newest first, only those matching every filter given ("" / None: no filter)."""
        filters: list[Filter] = [] if phase is None else [("phase = ?", Phase(phase).value)]
        filters += [("agent = ?", agent)] if agent else []
        filters += [("parent_id = ?", parent_id)] if parent_id else []
        filters += _created_after(created_after)
        with self._db.read("list agent executions") as conn:
            return agent_executions.list_page(conn, filters=filters, page_size=page_size, page_token=page_token)

    def delete_agent_execution(self, id: str) -> bool:
        with self._db.write(f"delete agent execution {id}") as conn:
            deleted = agent_executions.delete(conn, id)
        if deleted:
            self._notify(AGENT_EXECUTION, id)
        return deleted

    def mark_agent_execution_started(self, id: str, *, at: float | None = None) -> AgentExecution:
        return self._change(
            AGENT_EXECUTION,
            id,
            f"mark agent execution {id} started",
            lambda conn: agent_executions.mark_started(conn, id, at=_now(at)),
        )

    def complete_agent_execution(
        self, id: str, *, replies: Sequence[Message], at: float | None = None
    ) -> AgentExecution:
        return self._change(
            AGENT_EXECUTION,
            id,
            f"complete agent execution {id}",
            lambda conn: agent_executions.complete(conn, id, replies=replies, at=_now(at)),
        )

    def fail_agent_execution(self, id: str, *, error: str, at: float | None = None) -> AgentExecution:
        return self._change(
            AGENT_EXECUTION,
            id,
            f"fail agent execution {id}",
            lambda conn: agent_executions.fail(conn, id, error=error, at=_now(at)),
        )

    def unfinished_agent_executions(self) -> list[AgentExecution]:
        """PENDING or IN_PROGRESS, oldest first (for the reconciler)."""
        with self._db.read("list unfinished agent executions") as conn:
            return agent_executions.unfinished(conn)

    # -- workflows ----------------------------------------------------------------------------

    def create_workflow(
        self,
        *,
        name: str,
        document: str,
        valid: bool,
        validation_errors: Sequence[str] = (),
        request: RequestKey | None = None,
    ) -> Workflow:
        """AlreadyExistsError if a workflow with this name is stored (unless ``request`` made it:
        then that workflow is returned, see admit_agent_execution)."""
        new = new_id(workflows.PREFIX)

        def admit() -> Workflow:
            with self._db.write(f"create workflow {name!r}") as conn:
                now = time.time()
                found = None if request is None else workflows.find_request(conn, request, now=now)
                if found is not None:
                    return found
                record = workflows.insert(
                    conn,
                    id=new,
                    name=name,
                    document=document,
                    valid=valid,
                    validation_errors=validation_errors,
                    at=now,
                    request=request,
                )
            self._notify(WORKFLOW, new)
            return record

        return _once_more_on_race(admit)

    def find_workflow_request(self, request: RequestKey) -> Workflow | None:
        """The workflow created with this request id and body, if it is still live."""
        with self._db.write(f"look up request {request.id}") as conn:
            return workflows.find_request(conn, request, now=time.time())

    def delete_workflow(self, id_or_name: str) -> Workflow:
        """Delete it and return it; FailedPreconditionError while executions of it are unfinished."""
        with self._db.write(f"delete workflow {id_or_name!r}") as conn:
            current = workflows.get(conn, id_or_name, lock=True)  # no new execution of it meanwhile
            record = workflows.delete(
                conn, current.id, unfinished=workflow_executions.count_unfinished_of(conn, current.id)
            )
        self._notify(WORKFLOW, record.id)
        return record

    def get_workflow(self, id_or_name: str) -> Workflow:
        with self._db.read(f"read workflow {id_or_name!r}") as conn:
            return workflows.get(conn, id_or_name)

    def list_workflows(self, *, page_size: int = 50, page_token: str = "") -> tuple[list[Workflow], str]:
        with self._db.read("list workflows") as conn:
            return workflows.list_page(conn, page_size=page_size, page_token=page_token)

    # -- workflow executions ------------------------------------------------------------------

    def create_workflow_execution(
        self,
        *,
        workflow: Workflow,
        input: str,
        task_names_kinds: Sequence[tuple[str, str]],
        id: str | None = None,
        request: RequestKey | None = None,
    ) -> WorkflowExecution:
        """A PENDING execution with every task PENDING; NotFoundError if ``workflow`` is not stored."""
        return self.admit_workflow_execution(
            workflow=workflow, input=input, task_names_kinds=task_names_kinds, id=id, request=request
        )[0]

    def admit_workflow_execution(
        self,
        *,
        workflow: Workflow,
        input: str,
        task_names_kinds: Sequence[tuple[str, str]],
        id: str | None = None,
        request: RequestKey | None = None,
    ) -> tuple[WorkflowExecution, bool]:
        """(record, created); see admit_agent_execution."""
        new = _id_for(workflow_executions.PREFIX, id)

        def admit() -> tuple[WorkflowExecution, bool]:
            with self._db.write(f"create workflow execution {new}") as conn:
                now = time.time()
                found = None if request is None else workflow_executions.find_request(conn, request, now=now)
                if found is not None:
                    return found, False
                # No executions of workflows the store never saw (or that a delete is removing).
                workflows.get(conn, workflow.id, share_lock=True)
                record = workflow_executions.insert(
                    conn,
                    id=new,
                    workflow=workflow,
                    input=input,
                    task_names_kinds=task_names_kinds,
                    at=now,
                    request=request,
                )
            self._notify(WORKFLOW_EXECUTION, new)
            return record, True

        return _once_more_on_race(admit)

    def get_workflow_execution(self, id: str) -> WorkflowExecution:
        with self._db.read(f"read workflow execution {id}") as conn:
            return workflow_executions.get(conn, id)

    def list_workflow_executions(
        self,
        *,
        phase: Phase | None = None,
        workflow: str = "",
        created_after: float | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[WorkflowExecution], str]:
        """Newest first; ``workflow`` is a wf- id or the workflow's name when the execution was made."""
        filters: list[Filter] = [] if phase is None else [("phase = ?", Phase(phase).value)]
        if workflow:
            column = "workflow_id = ?" if is_valid_id(workflows.PREFIX, workflow) else "workflow_name = ?"
            filters.append((column, workflow))
        filters += _created_after(created_after)
        with self._db.read("list workflow executions") as conn:
            return workflow_executions.list_page(conn, filters=filters, page_size=page_size, page_token=page_token)

    def delete_workflow_execution(self, id: str) -> bool:
        with self._db.write(f"delete workflow execution {id}") as conn:
            deleted = workflow_executions.delete(conn, id)
        if deleted:
            self._notify(WORKFLOW_EXECUTION, id)
        return deleted

    def mark_workflow_execution_started(self, id: str, *, at: float | None = None) -> WorkflowExecution:
        return self._change(
            WORKFLOW_EXECUTION,
            id,
            f"mark workflow execution {id} started",
            lambda conn: workflow_executions.mark_started(conn, id, at=_now(at)),
        )

    def set_task_status(
        self, id: str, task: str, status: TaskStatus, *, output: str = "", error: str = ""
    ) -> WorkflowExecution:
        """Move a task forward; repeats, steps back and changes to a finished task are no-ops."""
        return self._change(
            WORKFLOW_EXECUTION,
            id,
            f"set task {task!r} of workflow execution {id}",
            lambda conn: workflow_executions.set_task_status(conn, id, task, status, output=output, error=error),
        )

    def complete_workflow_execution(self, id: str, *, output: str, at: float | None = None) -> WorkflowExecution:
        return self._change(
            WORKFLOW_EXECUTION,
            id,
            f"complete workflow execution {id}",
            lambda conn: workflow_executions.complete(conn, id, output=output, at=_now(at)),
        )

    def fail_workflow_execution(self, id: str, *, error: str, at: float | None = None) -> WorkflowExecution:
        return self._change(
            WORKFLOW_EXECUTION,
            id,
            f"fail workflow execution {id}",
            lambda conn: workflow_executions.fail(conn, id, error=error, at=_now(at)),
        )

    def unfinished_workflow_executions(self) -> list[WorkflowExecution]:
        """PENDING or IN_PROGRESS, oldest first (for the reconciler)."""
        with self._db.read("list unfinished workflow executions") as conn:
            return workflow_executions.unfinished(conn)
