"""Reconciler passes under a flapping connection: only the newest waiting pass runs.

Found by the chaos soak: every entry to CONNECTED asks for a pass, passes never overlap, and so
under a connection that reconnected every few seconds eleven passes queued up and then ran back
to back, each through the client of a connection long gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from temporalio.client import WorkflowExecutionStatus

from stigmer.controllers import Reconciler
from stigmer.store import Store
from stigmer.temporal.names import TaskQueues
from stigmer.temporal.session import TemporalSession
from tests.unit.aio import spin_until


class GatedClient:
    """describe() answers RUNNING once `gate` opens; records who was asked."""

    def __init__(self, name: str, gate: asyncio.Event, asked: list[str]) -> None:
        self.name, self._gate, self._asked = name, gate, asked

    def get_workflow_handle(self, workflow_id: str) -> SimpleNamespace:
        async def describe(**_: object) -> SimpleNamespace:
            self._asked.append(self.name)
            await self._gate.wait()
            return SimpleNamespace(status=WorkflowExecutionStatus.RUNNING)

        return SimpleNamespace(describe=describe)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


async def test_only_the_newest_waiting_pass_runs(store: Store) -> None:
    store.create_agent_execution(agent="echo", message="unfinished")
    reconciler = Reconciler(store=store)
    gate, asked = asyncio.Event(), []
    first, second, third = (GatedClient(name, gate, asked) for name in ("first", "second", "third"))
    running = asyncio.ensure_future(reconciler.reconcile(TemporalSession(first, queues=TaskQueues.with_suffix("unit"))))  # type: ignore[arg-type]
    await spin_until(lambda: asked == ["first"], what="the first pass to be describing")
    waiting = [
        asyncio.ensure_future(reconciler.reconcile(TemporalSession(c, queues=TaskQueues.with_suffix("unit"))))  # type: ignore[arg-type]
        for c in (second, third)
    ]
    gate.set()
    reports = await asyncio.wait_for(asyncio.gather(running, *waiting), timeout=5)
    assert [r.superseded for r in reports] == [False, True, False]
    assert [r.checked for r in reports] == [1, 0, 1]
    assert asked == ["first", "third"]  # the superseded pass never touched Temporal
