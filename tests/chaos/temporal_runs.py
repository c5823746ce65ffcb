"""Temporal's own account of a soak: every run of the agent and workflow execution workflows.

Read once at the end, after every record is terminal, through Temporal's visibility API (which
lags a moment behind the workflows' histories: it is read again until no run shows as running,
within a bound; whatever still runs then is for the report to judge). The report counts these
runs against the records (report_requests.py): one workflow per execution, none started twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client

from stigmer.temporal import names
from stigmer.testing.eventually import wait_until

#: The workflow types that belong to executions (validations have no record).
EXECUTION_WORKFLOWS = (names.AGENT_EXECUTION_WORKFLOW, names.WORKFLOW_EXECUTION_WORKFLOW)
#: Visibility catches up within a second or so once the records are terminal.
SETTLE_TIMEOUT = 20.0
RPC_TIMEOUT = timedelta(seconds=10)
LIST_TIMEOUT = 60.0


@dataclass(frozen=True)
class Run:
    """One run of a workflow, as Temporal lists it."""

    status: str  # RUNNING, COMPLETED, FAILED, ... (WorkflowExecutionStatus names)
    parent_id: str = ""  # the parent workflow's id, for a workflow execution's step


def execution_id(workflow_id: str) -> str:
    """The execution id a workflow id is derived from ("stigmer/agent-execution/invoke/aex-..." -> "aex-...")."""
    return workflow_id.rsplit("/", 1)[-1]


async def _list(address: str) -> dict[str, list[Run]]:
    client = await asyncio.wait_for(Client.connect(address), timeout=10)
    runs: dict[str, list[Run]] = {}
    for workflow_type in EXECUTION_WORKFLOWS:
        listing = client.list_workflows(
            query=f'WorkflowType = "{workflow_type}"', page_size=1000, rpc_timeout=RPC_TIMEOUT
        )
        async for workflow in listing:
            status = workflow.status.name if workflow.status is not None else "UNKNOWN"
            runs.setdefault(workflow.id, []).append(Run(status=status, parent_id=workflow.parent_id or ""))
    return runs


def read(address: str) -> dict[str, list[Run]]:
    """Every run of the execution workflows now, by workflow id."""
    return asyncio.run(asyncio.wait_for(_list(address), timeout=LIST_TIMEOUT))


def running(runs: dict[str, list[Run]]) -> list[str]:
    return [workflow_id for workflow_id, of_id in runs.items() if any(r.status == "RUNNING" for r in of_id)]


def temporal_runs(address: str, *, settle: float = SETTLE_TIMEOUT) -> dict[str, list[Run]]:
    """The runs once none shows as running (or as they are when ``settle`` s have passed)."""
    last: dict[str, list[Run]] = {}

    def settled() -> bool:
        nonlocal last
        last = read(address)
        return not running(last)

    with contextlib.suppress(AssertionError):  # the report names what still runs
        wait_until(settled, timeout=settle, interval=0.5, what="Temporal to list no execution workflow running")
    return last
