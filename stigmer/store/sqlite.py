"""``Store``: the public face of the SQLite repository.

Each method is one transaction (see ``Database``) around a function from the per-table modules.
Listeners hear about a change only after it is committed, and are called after the lock is
released, so a slow or re-entrant listener (one that reads the store) cannot deadlock or stall
other writers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from loguru import logger

from . import agent_executions, workflow_executions, workflows
from .db import Database
from .ids import is_valid_id, new_id
from .models import AgentExecution, Message, Phase, TaskStatus, Workflow, WorkflowExecution

__all__ = ["AGENT_EXECUTION", "WORKFLOW", "WORKFLOW_EXECUTION", "Listener", "Store"]

# Kinds passed to listeners.
AGENT_EXECUTION = "agent_execution"
WORKFLOW = "workflow"
WORKFLOW_EXECUTION = "workflow_execution"

Listener = Callable[[str, str], None]


def _now(at: float | None) -> float:
    return time.time() if at is None else at


def _id_for(prefix: str, id: str | None) -> str:
    if id is None:
        return new_id(prefix)
    if not is_valid_id(prefix, id):
        raise ValueError(f"id must be '{prefix}-' followed by a 26-character ULID, got {id!r}")
    return id


class Store:
    """Agent executions, workflows and workflow executions in ``<data_dir>/stigmer.db``."""

    def __init__(self, *, database: Database) -> None:
        self._db = database
        self.path: Path = database.path
        self._listeners: dict[int, Listener] = {}
        self._listener_keys = itertools.count()
        self._listeners_lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        """Create the dir and database if needed; StoreError if the file cannot be trusted or written."""
        return cls(database=Database.open(data_dir))

    def close(self) -> None:
        self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- change notification ------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(kind, id)`` after each committed change; returns an idempotent unsubscribe."""
        with self._listeners_lock:
            key = next(self._listener_keys)
            self._listeners[key] = fn

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners.pop(key, None)

        return unsubscribe

    def _notify(self, kind: str, id: str) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners.values())
        for fn in listeners:
            try:
                fn(kind, id)
            except Exception:
                # The change is already committed; one broken watcher must not fail the writer.
                logger.exception("Store listener {!r} failed on {} {}", fn, kind, id)

    # -- agent executions ---------------------------------------------------------------------

    def create_agent_execution(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: dict[str, str] | None = None,
        parent_id: str = "",
        id: str | None = None,
    ) -> AgentExecution:
        """A PENDING execution whose messages are just the user's; AlreadyExistsError if ``id`` is taken."""
        new = _id_for(agent_executions.PREFIX, id)
        with self._db.write(f"create agent execution {new}") as conn:
            record = agent_executions.insert(
                conn,
                id=new,
                agent=agent,
                message=message,
                runtime_env=runtime_env or {},
                parent_id=parent_id,
                at=time.time(),
            )
        self._notify(AGENT_EXECUTION, new)
        return record

    def get_agent_execution(self, id: str) -> AgentExecution:
        with self._db.read(f"read agent execution {id}") as conn:
            return agent_executions.get(conn, id)

    def list_agent_executions(
        self, *, phase: Phase | None = None, page_size: int = 50, page_token: str = ""
    ) -> tuple[list[AgentExecution], str]:
        with self._db.read("list agent executions") as conn:
            return agent_executions.list_page(conn, phase=phase, page_size=page_size, page_token=page_token)

    def delete_agent_execution(self, id: str) -> bool:
        with self._db.write(f"delete agent execution {id}") as conn:
            deleted = agent_executions.delete(conn, id)
        if deleted:
            self._notify(AGENT_EXECUTION, id)
        return deleted

    def mark_agent_execution_started(self, id: str, *, at: float | None = None) -> AgentExecution:
        with self._db.write(f"mark agent execution {id} started") as conn:
            record, changed = agent_executions.mark_started(conn, id, at=_now(at))
        if changed:
            self._notify(AGENT_EXECUTION, id)
        return record

    def complete_agent_execution(
        self, id: str, *, replies: Sequence[Message], at: float | None = None
    ) -> AgentExecution:
        with self._db.write(f"complete agent execution {id}") as conn:
            record, changed = agent_executions.complete(conn, id, replies=replies, at=_now(at))
        if changed:
            self._notify(AGENT_EXECUTION, id)
        return record

    def fail_agent_execution(self, id: str, *, error: str, at: float | None = None) -> AgentExecution:
        with self._db.write(f"fail agent execution {id}") as conn:
            record, changed = agent_executions.fail(conn, id, error=error, at=_now(at))
        if changed:
            self._notify(AGENT_EXECUTION, id)
        return record

    def unfinished_agent_executions(self) -> list[AgentExecution]:
        """PENDING or IN_PROGRESS, oldest first (for the reconciler)."""
        with self._db.read("list unfinished agent executions") as conn:
            return agent_executions.unfinished(conn)

    # -- workflows ----------------------------------------------------------------------------

    def create_workflow(
        self, *, name: str, document: str, valid: bool, validation_errors: Sequence[str] = ()
    ) -> Workflow:
        """AlreadyExistsError if a workflow with this name is stored."""
        new = new_id(workflows.PREFIX)
        with self._db.write(f"create workflow {name!r}") as conn:
            record = workflows.insert(
                conn,
                id=new,
                name=name,
                document=document,
                valid=valid,
                validation_errors=validation_errors,
                at=time.time(),
            )
        self._notify(WORKFLOW, new)
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
    ) -> WorkflowExecution:
        """A PENDING execution with every task PENDING; NotFoundError if ``workflow`` is not stored."""
        new = _id_for(workflow_executions.PREFIX, id)
        with self._db.write(f"create workflow execution {new}") as conn:
            workflows.get(conn, workflow.id)  # no executions of workflows the store never saw
            record = workflow_executions.insert(
                conn,
                id=new,
                workflow=workflow,
                input=input,
                task_names_kinds=task_names_kinds,
                at=time.time(),
            )
        self._notify(WORKFLOW_EXECUTION, new)
        return record

    def get_workflow_execution(self, id: str) -> WorkflowExecution:
        with self._db.read(f"read workflow execution {id}") as conn:
            return workflow_executions.get(conn, id)

    def list_workflow_executions(
        self, *, phase: Phase | None = None, page_size: int = 50, page_token: str = ""
    ) -> tuple[list[WorkflowExecution], str]:
        with self._db.read("list workflow executions") as conn:
            return workflow_executions.list_page(conn, phase=phase, page_size=page_size, page_token=page_token)

    def delete_workflow_execution(self, id: str) -> bool:
        with self._db.write(f"delete workflow execution {id}") as conn:
            deleted = workflow_executions.delete(conn, id)
        if deleted:
            self._notify(WORKFLOW_EXECUTION, id)
        return deleted

    def mark_workflow_execution_started(self, id: str, *, at: float | None = None) -> WorkflowExecution:
        with self._db.write(f"mark workflow execution {id} started") as conn:
            record, changed = workflow_executions.mark_started(conn, id, at=_now(at))
        if changed:
            self._notify(WORKFLOW_EXECUTION, id)
        return record

    def set_task_status(
        self, id: str, task: str, status: TaskStatus, *, output: str = "", error: str = ""
    ) -> WorkflowExecution:
        """Move a task forward; repeats, steps back and changes to a finished task are no-ops."""
        with self._db.write(f"set task {task!r} of workflow execution {id}") as conn:
            record, changed = workflow_executions.set_task_status(conn, id, task, status, output=output, error=error)
        if changed:
            self._notify(WORKFLOW_EXECUTION, id)
        return record

    def complete_workflow_execution(self, id: str, *, output: str, at: float | None = None) -> WorkflowExecution:
        with self._db.write(f"complete workflow execution {id}") as conn:
            record, changed = workflow_executions.complete(conn, id, output=output, at=_now(at))
        if changed:
            self._notify(WORKFLOW_EXECUTION, id)
        return record

    def fail_workflow_execution(self, id: str, *, error: str, at: float | None = None) -> WorkflowExecution:
        with self._db.write(f"fail workflow execution {id}") as conn:
            record, changed = workflow_executions.fail(conn, id, error=error, at=_now(at))
        if changed:
            self._notify(WORKFLOW_EXECUTION, id)
        return record

    def unfinished_workflow_executions(self) -> list[WorkflowExecution]:
        """PENDING or IN_PROGRESS, oldest first (for the reconciler)."""
        with self._db.read("list unfinished workflow executions") as conn:
            return workflow_executions.unfinished(conn)
