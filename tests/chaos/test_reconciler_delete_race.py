"""A finding of the chaos soak, reduced: an execution deleted while a reconciler pass checks it.

The soak's load deletes executions as they finish (issue 14), and the stigmer server's reconciler
runs a pass on every reconnection. A pass lists the unfinished executions, then asks Temporal
about each one; an execution that finishes meanwhile and is deleted by its owner (Delete, or
Delete with force, which cancels and waits) is gone when the pass reads it again after Temporal's
answer. The pass then logs ``[ERROR] Reconciler could not check aex-...: agent execution ... not
found`` with a traceback -- a line the log contract reserves for what needs investigation -- and
counts an error, where an execution that is gone has simply nothing left to settle (as
``_finished`` already treats one removed after a failed start). Seen once in the in-memory soak
(``server log: tracebacks 1``, ``ERROR lines 1``, ``Reconciled unfinished executions ... errors=1``).

Here the race is made deterministic with a fake session whose ``describe`` finishes and deletes
the execution before it answers, as a client would while the pass waits for Temporal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from stigmer.controllers import Reconciler
from stigmer.controllers.ports import RemoteStatus
from stigmer.store import AGENT_EXECUTION, Message, Store
from stigmer.temporal.names import agent_execution_workflow_id


class _Unused:
    """A starter the pass must not need: the execution is finished (and gone) when it looks."""

    client = None

    async def start(self, execution_id: str, *, timeout: float) -> str:  # noqa: ASYNC109
        raise AssertionError(f"started {execution_id}")

    async def cancel(self, execution_id: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        raise AssertionError(f"cancelled {execution_id}")


class DeletedWhileAsked:
    """A session whose Temporal answers only after the execution has finished and been deleted."""

    client = None
    agent_executions = _Unused()
    workflow_executions = _Unused()

    def __init__(self, store: Store, status: RemoteStatus) -> None:
        self._store, self._status = store, status

    async def describe(self, workflow_id: str, *, timeout: float) -> RemoteStatus | None:  # noqa: ASYNC109
        execution_id = workflow_id.rsplit("/", 1)[-1]
        done = [Message(role="agent", text="done", at=time.time())]
        self._store.complete_agent_execution(execution_id, replies=done)  # the workflow records its result
        self._store.delete_finished(AGENT_EXECUTION, execution_id)  # and its owner deletes it
        return self._status


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


@pytest.mark.parametrize("status", [RemoteStatus.COMPLETED, RemoteStatus.RUNNING, None], ids=str)
async def test_an_execution_deleted_during_a_pass_is_no_error(store: Store, status: RemoteStatus | None) -> None:
    execution = store.create_agent_execution(agent="echo", message="finishes while the pass asks Temporal")
    store.mark_agent_execution_started(execution.id)
    assert execution.workflow_id == agent_execution_workflow_id(execution.id)
    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(str(message)), level="ERROR")
    try:
        report = await Reconciler(store=store).reconcile(DeletedWhileAsked(store, status))  # type: ignore[arg-type]
    finally:
        logger.remove(sink)
    assert report.checked == 1
    assert (report.errors, errors) == (0, []), errors
