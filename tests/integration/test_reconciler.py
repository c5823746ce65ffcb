"""The reconciler (and the controllers' create flow) against a real Temporal dev server that is
killed and restarted mid-run.

(a) In memory, Temporal forgets everything on restart: executions that had started are marked
FAILED with the clear reason (steps of a lost workflow execution too), executions that were
never started are started again and complete.
(b) With a db file, Temporal keeps its workflows: the interrupted executions complete, each
result recorded exactly once.

Each test has its own server, store and task queues; old workers are stopped (bounded) before
Temporal comes back, and the new ones are built on a fresh client, as the connection does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from stigmer.controllers import LOST_REASON, AgentExecutionController, Reconciler, ReconcileReport
from stigmer.errors import NotFoundError, TemporalUnavailableError
from stigmer.store import AgentExecution, Phase, Store, WorkflowExecution
from stigmer.temporal import names
from stigmer.temporal.agents import DELAY_ENV, EchoAgentRunner
from stigmer.temporal.creators import AgentExecutionCreator, WorkflowExecutionCreator
from stigmer.temporal.names import TaskQueues
from stigmer.temporal.session import TemporalSession
from stigmer.temporal.workers import build_workers
from stigmer.testing.eventually import eventually
from stigmer.testing.factories import TemporalDevServerFactory
from stigmer.testing.temporal import TemporalDevServer

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(60)]

CALL_TIMEOUT = 5.0
SHUTDOWN_BOUND = 3.0  # after a kill, a worker may never finish shutting down: it is then cancelled
RECONCILE_BOUND = 15.0


# -- helpers -----------------------------------------------------------------------------------


async def connect(server: TemporalDevServer) -> Client:
    return await asyncio.wait_for(Client.connect(server.address, namespace=server.namespace), CALL_TIMEOUT)


@contextlib.asynccontextmanager
async def running_workers(client: Client, *, store: Store, queues: TaskQueues) -> AsyncIterator[None]:
    workers = build_workers(
        client,
        store=store,
        runner=EchoAgentRunner(heartbeat_interval=0.2),
        queues=queues,
        graceful_shutdown_timeout=timedelta(seconds=0.5),
        sandbox=True,
    )
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        await eventually(lambda: all(w.is_running for w in workers), timeout=CALL_TIMEOUT, what="workers running")
        yield
    finally:
        await stop_workers(workers, tasks)


async def stop_workers(workers: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
    """Shut down, bounded; whatever is still running after SHUTDOWN_BOUND is cancelled."""
    shutdowns = [asyncio.ensure_future(worker.shutdown()) for worker in workers]
    _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_BOUND)
    for task in [*pending, *shutdowns]:
        task.cancel()
    await asyncio.wait([*tasks, *shutdowns], timeout=2.0)
    for task in [*tasks, *shutdowns]:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a dead connection's error is expected here


async def restart(server: TemporalDevServer) -> None:
    """Crash (SIGKILL), then start again on the same port (with the same db file, if any)."""
    await asyncio.to_thread(server.kill)
    await asyncio.to_thread(server.restart)
    await server.wait_ready_async()


async def wait_phase(store: Store, id: str, phase: Phase, *, within: float = 15.0) -> Any:
    """The record once it reaches `phase`; fails at once if it ends in another terminal phase."""
    read: Callable[[str], AgentExecution | WorkflowExecution] = (
        store.get_agent_execution if id.startswith("aex-") else store.get_workflow_execution
    )

    def reached() -> bool:
        try:
            record = read(id)
        except NotFoundError:  # a workflow's step: not created yet
            return False
        if record.phase.terminal and record.phase is not phase:
            raise AssertionError(f"{id} ended {record.phase}: {record.error}")
        return record.phase is phase

    await eventually(reached, timeout=within, what=f"{id} to be {phase}")
    return read(id)


def workflow_execution(store: Store, document: dict[str, Any], *, input: str = "") -> WorkflowExecution:
    workflow = store.create_workflow(
        name=f"{document['name']}-{uuid.uuid4().hex[:8]}", document=json.dumps(document), valid=True
    )
    return store.create_workflow_execution(
        workflow=workflow, input=input, task_names_kinds=[(t["name"], t["kind"]) for t in document["tasks"]]
    )


def agent_replies(record: AgentExecution) -> list[str]:
    return [m.text for m in record.messages if m.role != "user"]


SLOW_STEP = {"name": "slow-step", "tasks": [
    {"name": "ask", "kind": "agent", "agent": "echo", "message": "slow step", "runtime_env": {DELAY_ENV: "60"}},
]}  # fmt: skip
QUICK = {"name": "quick", "tasks": [
    {"name": "t1", "kind": "set", "values": {"who": "${input.user}"}},
    {"name": "t2", "kind": "agent", "agent": "echo", "message": "hi ${who}"},
]}  # fmt: skip
WAIT_THEN_QUICK = {"name": "wait-then-quick", "tasks": [{"name": "w", "kind": "wait", "seconds": 2}, *QUICK["tasks"]]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


# -- (a) in memory: lost work fails clearly, never-started work runs ---------------------------


async def test_in_memory_restart_fails_lost_and_restarts_pending(
    temporal_dev_server_factory: TemporalDevServerFactory, store: Store
) -> None:
    server = temporal_dev_server_factory(wait=False)
    await server.wait_ready_async()
    queues = TaskQueues.with_suffix(uuid.uuid4().hex[:12])

    client = await connect(server)
    async with running_workers(client, store=store, queues=queues):
        slow = store.create_agent_execution(agent="echo", message="slow", runtime_env={DELAY_ENV: "60"})
        await AgentExecutionCreator(client, queues=queues).start(slow.id, timeout=CALL_TIMEOUT)
        slow_wex = workflow_execution(store, SLOW_STEP)
        await WorkflowExecutionCreator(client, queues=queues).start(slow_wex.id, timeout=CALL_TIMEOUT)
        step_id = names.step_agent_execution_id(slow_wex.id, "ask")
        await wait_phase(store, slow.id, Phase.IN_PROGRESS)
        await wait_phase(store, step_id, Phase.IN_PROGRESS)
        # Stored while Temporal was up, never started (as if the server died between the two).
        pending = store.create_agent_execution(agent="echo", message="never started ✓ 'q'")
        pending_wex = workflow_execution(store, QUICK, input='{"user": "Zoë"}')
        await asyncio.to_thread(server.kill)
    await restart(server)

    fresh = await connect(server)
    async with running_workers(fresh, store=store, queues=queues):
        report = await asyncio.wait_for(
            Reconciler(store=store).reconcile(TemporalSession(fresh, queues=queues)), RECONCILE_BOUND
        )
        counts = (report.checked, report.running, report.restarted, report.failed, report.errors)
        assert counts == (5, 0, 2, 3, 0) and not report.interrupted, report
        for lost in (store.get_agent_execution(slow.id), store.get_workflow_execution(slow_wex.id),
                     store.get_agent_execution(step_id)):  # fmt: skip
            assert (lost.phase, lost.error) == (Phase.FAILED, LOST_REASON), lost.id
        done = await wait_phase(store, pending.id, Phase.COMPLETED)
        assert agent_replies(done) == ["[echo] never started ✓ 'q'"]
        done_wex = await wait_phase(store, pending_wex.id, Phase.COMPLETED)
        assert json.loads(done_wex.output) == {"who": "Zoë"}
        # Nothing left unfinished: a second pass has nothing to do.
        again = await asyncio.wait_for(
            Reconciler(store=store).reconcile(TemporalSession(fresh, queues=queues)), RECONCILE_BOUND
        )
        assert again == ReconcileReport()


# -- (b) persistent: interrupted work completes, once ------------------------------------------


async def test_persistent_restart_completes_each_execution_exactly_once(
    temporal_dev_server_factory: TemporalDevServerFactory, store: Store
) -> None:
    server = temporal_dev_server_factory(persistent=True, wait=False)
    await server.wait_ready_async()
    queues = TaskQueues.with_suffix(uuid.uuid4().hex[:12])

    client = await connect(server)
    async with running_workers(client, store=store, queues=queues):
        aex = store.create_agent_execution(agent="echo", message="survive", runtime_env={DELAY_ENV: "2"})
        await AgentExecutionCreator(client, queues=queues).start(aex.id, timeout=CALL_TIMEOUT)
        wex = workflow_execution(store, WAIT_THEN_QUICK, input='{"user": "Ann"}')
        await WorkflowExecutionCreator(client, queues=queues).start(wex.id, timeout=CALL_TIMEOUT)
        await wait_phase(store, aex.id, Phase.IN_PROGRESS)
        await wait_phase(store, wex.id, Phase.IN_PROGRESS)
        await asyncio.to_thread(server.kill)
    killed = time.monotonic()
    await restart(server)

    fresh = await connect(server)
    async with running_workers(fresh, store=store, queues=queues):
        report = await asyncio.wait_for(
            Reconciler(store=store).reconcile(TemporalSession(fresh, queues=queues)), RECONCILE_BOUND
        )
        assert (report.checked, report.running, report.failed, report.restarted) == (2, 2, 0, 0), report
        done = await wait_phase(store, aex.id, Phase.COMPLETED, within=30)
        done_wex = await wait_phase(store, wex.id, Phase.COMPLETED, within=30)
        print(f"completed {time.monotonic() - killed:.1f}s after the kill")
    assert agent_replies(done) == ["[echo] survive"]  # exactly one reply: not run twice, not recorded twice
    assert json.loads(done_wex.output) == {"who": "Ann"}
    step = store.get_agent_execution(names.step_agent_execution_id(wex.id, "t2"))
    assert agent_replies(step) == ["[echo] hi Ann"]
    assert [r.id for r in store.list_agent_executions()[0]] == sorted([aex.id, step.id], reverse=True)


# -- the controllers' create flow with real creators ---------------------------------------------


class RecordingAvailability:
    """Stands in for TemporalConnection (tested on its own): records what the controllers report."""

    def __init__(self) -> None:
        self.reports: list[tuple[object, object]] = []

    async def wait_available(self) -> bool:
        return False

    def report_unavailable(self, error: BaseException | str, *, client: Client | None = None) -> None:
        self.reports.append((error, client))

    def unavailable_details(self) -> tuple[str, float]:
        return "CONNECTED", 1.0


async def test_controller_create_runs_to_completion_and_a_failed_start_leaves_no_record(
    temporal_dev_server_factory: TemporalDevServerFactory, store: Store
) -> None:
    server = temporal_dev_server_factory(wait=False)
    await server.wait_ready_async()
    queues = TaskQueues.with_suffix(uuid.uuid4().hex[:12])
    availability = RecordingAvailability()
    controller = AgentExecutionController(store=store, availability=availability, start_timeout=2.0)
    client = await connect(server)
    creator = AgentExecutionCreator(client, queues=queues)
    controller.set_creator(creator)
    async with running_workers(client, store=store, queues=queues):
        created = await controller.create(agent="echo", message="héllo 'q' \"dq\" ; DROP TABLE x; --")
        phases = [update.phase async for update in controller.watch(created.id)]
        assert phases[-1] is Phase.COMPLETED and phases[0] in (Phase.PENDING, Phase.IN_PROGRESS)
        assert agent_replies(controller.get(created.id)) == ["[echo] héllo 'q' \"dq\" ; DROP TABLE x; --"]
        # Temporal dies while the creator is still injected (before the health check notices).
        await asyncio.to_thread(server.kill)
        started = time.monotonic()
        with pytest.raises(TemporalUnavailableError):
            await controller.create(agent="echo", message="lost?")
        assert time.monotonic() - started < 4
        assert [r.id for r in store.list_agent_executions()[0]] == [created.id]  # the new record was removed
        assert len(availability.reports) == 1 and availability.reports[0][1] is client
