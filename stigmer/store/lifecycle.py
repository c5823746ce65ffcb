"""Cancel and delete, for either execution kind (AGENT_EXECUTION or WORKFLOW_EXECUTION).

One transaction each; a workflow execution takes its step agent executions along (they are
cancelled with it, and deleted with it once finished).
"""

from __future__ import annotations

import time
from typing import Any, cast

from . import agent_executions, workflow_executions
from .base import AGENT_EXECUTION, WORKFLOW_EXECUTION, StoreBase
from .base import now as _now
from .models import AgentExecution, WorkflowExecution
from .requests import RequestKey

__all__ = ["Execution", "ExecutionLifecycle"]

Execution = AgentExecution | WorkflowExecution
_TABLES: dict[str, Any] = {AGENT_EXECUTION: agent_executions, WORKFLOW_EXECUTION: workflow_executions}


def _table(kind: str) -> Any:
    """The module of an execution kind (both have the same functions, typed per kind)."""
    try:
        return _TABLES[kind]
    except KeyError:
        raise ValueError(f"not an execution kind: {kind!r}") from None


class ExecutionLifecycle(StoreBase):
    def find_request(self, kind: str, request: RequestKey) -> Execution | None:
        """The live record created with this request id and body (AlreadyExistsError if the body differs)."""
        table = _table(kind)
        with self._db.write(f"look up request {request.id}") as conn:
            return cast(Execution | None, table.find_request(conn, request, now=time.time()))

    def forget(self, kind: str, id: str, *, version: int) -> bool:
        """Remove a record whose workflow could not be started, unless a retried create claimed it."""
        table = _table(kind)
        with self._db.write(f"forget {id}") as conn:
            gone = bool(table.forget(conn, id, version=version))
        if gone:
            self._notify(kind, id)
        return gone

    def claim(self, kind: str, id: str) -> Execution | None:
        """Protect a record a retried create is answered with from its first attempt's forget();
        None if it is gone (that attempt failed and removed it)."""
        table = _table(kind)
        with self._db.write(f"claim {id}") as conn:
            record, changed = table.claim(conn, id)
        if changed:
            self._notify(kind, id)
        return cast(Execution | None, record)

    def request_cancel(self, kind: str, id: str, *, by: str, reason: str, at: float | None = None) -> Execution:
        """Record who asks to cancel and why (the first request is kept); FailedPreconditionError
        naming the phase if the execution is already terminal."""
        table = _table(kind)
        return self._change(
            kind,
            id,
            f"request cancel of {id}",
            lambda c: cast(tuple[Execution, bool], table.request_cancel(c, id, by=by, reason=reason, at=_now(at))),
        )

    def withdraw_cancel(self, kind: str, id: str, *, requested_at: float) -> bool:
        """Forget a cancel request that never reached Temporal (only the one made at ``requested_at``)."""
        table = _table(kind)
        return self._change(
            kind,
            id,
            f"withdraw cancel of {id}",
            lambda c: (changed := bool(table.withdraw_cancel(c, id, requested_at=requested_at)), changed),
        )

    def cancel(self, kind: str, id: str, *, at: float | None = None, pending_only: bool = False) -> Execution:
        """Unfinished (only PENDING with ``pending_only``) -> CANCELLED, a workflow execution's steps
        with it; any other record is returned as it is."""
        steps: list[str] = []
        record: Execution
        with self._db.write(f"cancel {id}") as conn:
            if kind == WORKFLOW_EXECUTION:
                record, changed, steps = workflow_executions.cancel(conn, id, at=_now(at), pending_only=pending_only)
            else:
                record, changed = _table(kind).cancel(conn, id, at=_now(at), pending_only=pending_only)
        self._notify_all(kind, [id] if changed else [], steps)
        return record

    def delete_finished(self, kind: str, id: str) -> Execution:
        """Delete a terminal execution (a workflow execution's finished steps with it) and return it;
        NotFoundError, or FailedPreconditionError naming the phase if it is unfinished."""
        steps: list[str] = []
        record: Execution
        with self._db.write(f"delete {id}") as conn:
            if kind == WORKFLOW_EXECUTION:
                record, steps = workflow_executions.delete_finished(conn, id)
            else:
                record = _table(kind).delete_finished(conn, id)
        self._notify_all(kind, [id], steps)
        return record
