# ruff: noqa: F811  (pytest fixtures imported from test_workflows are used as parameters)
"""A document under its size limit can still grow without bound while it runs; that must end in
FAILED naming the task, never an execution stuck IN_PROGRESS behind a refused payload."""

from __future__ import annotations

import pytest

from stigmer.store import Phase, Store, TaskStatus, WorkflowExecution
from stigmer.temporal.creators import WorkflowExecutionCreator
from stigmer.temporal.names import TaskQueues
from tests.integration.test_workflows import (  # noqa: F401  (fixtures used by name)
    CALL_TIMEOUT,
    client,
    create_wex,
    queues,
    running_workers,
    store,
    wex_finished,
)

pytestmark = pytest.mark.temporal


async def run_to_the_end(client, store: Store, queues: TaskQueues, document: dict) -> WorkflowExecution:
    """Store a workflow execution of ``document``, run it on real workers until it ends, read it back."""
    wex = create_wex(store, document)
    async with running_workers(client, store=store, queues=queues):
        await WorkflowExecutionCreator(client, queues=queues).start(wex.id, timeout=CALL_TIMEOUT)
        await wex_finished(client, wex.id)
    return store.get_workflow_execution(wex.id)


async def test_values_doubling_past_the_payload_limit_fail_the_task(client, store: Store, queues: TaskQueues):
    tasks = [{"name": "seed", "kind": "set", "values": {"v0": "x" * 1000}}]
    # Each task doubles the value: 1 KB * 2**12 = 4 MB, past Temporal's 2 MiB payload limit.
    tasks += [
        {"name": f"double{i}", "kind": "set", "values": {f"v{i}": f"${{v{i - 1}}}${{v{i - 1}}}"}} for i in range(1, 13)
    ]
    record = await run_to_the_end(client, store, queues, {"name": "grows", "tasks": tasks})
    assert record.phase is Phase.FAILED
    failed = [t for t in record.tasks if t.status is TaskStatus.FAILED]
    assert len(failed) == 1 and "grew to" in failed[0].error and "over the limit" in failed[0].error
    assert record.error.startswith(f"task '{failed[0].name}' failed")
    assert all(t.status is TaskStatus.SKIPPED for t in record.tasks[record.tasks.index(failed[0]) + 1 :])


async def test_an_agent_message_rendered_past_the_limit_fails_the_task(client, store: Store, queues: TaskQueues):
    tasks = [
        {"name": "seed", "kind": "set", "values": {"a": "y" * 400_000}},
        {"name": "ask", "kind": "agent", "agent": "echo", "message": "${a}${a}${a}"},
    ]
    record = await run_to_the_end(client, store, queues, {"name": "long-ask", "tasks": tasks})
    assert record.phase is Phase.FAILED
    assert [(t.name, t.status) for t in record.tasks] == [("seed", TaskStatus.COMPLETED), ("ask", TaskStatus.FAILED)]
    assert "the agent message grew to" in record.tasks[1].error
