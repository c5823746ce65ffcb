"""The three workflows and their workers against a real Temporal dev server and a real store.

Each test gets its own task queues (and so its own workers); executions have unique ids, so
tests share the session's dev server without seeing each other's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer, Worker

from stigmer.errors import TemporalUnavailableError
from stigmer.store import AgentExecution, Phase, Store, TaskStatus, WorkflowExecution
from stigmer.temporal import names
from stigmer.temporal.activities import AgentExecutionActivities, WorkflowExecutionActivities
from stigmer.temporal.agents import DELAY_ENV, FAIL_ENV, AgentRunner, EchoAgentRunner, Heartbeat
from stigmer.temporal.creators import AgentExecutionCreator, WorkflowExecutionCreator, WorkflowValidator
from stigmer.temporal.names import TaskQueues
from stigmer.temporal.payloads import AgentExecutionResult, CreateStepAgentExecutionInput, RunAgentInput
from stigmer.temporal.workers import build_workers
from stigmer.temporal.workflows import (
    AgentExecutionWorkflow,
    WorkflowExecutionWorkflow,
    WorkflowValidationWorkflow,
)
from stigmer.testing.eventually import eventually
from stigmer.testing.factories import TemporalDevServerFactory
from stigmer.testing.temporal import TemporalDevServer

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(60)]

CALL_TIMEOUT = 5.0  # every creator call and every wait for a result
SHUTDOWN_BOUND = 10.0


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def queues() -> TaskQueues:
    return TaskQueues.with_suffix(uuid.uuid4().hex[:12])


@pytest.fixture
async def client(temporal: TemporalDevServer) -> Client:
    return await asyncio.wait_for(Client.connect(temporal.address, namespace=temporal.namespace), CALL_TIMEOUT)


class CountingRunner:
    """Echo runner that counts calls and can fail the first `transient_failures` of them."""

    def __init__(self, *, transient_failures: int = 0) -> None:
        self.calls = 0
        self._transient_failures = transient_failures
        self._echo = EchoAgentRunner(heartbeat_interval=0.1)

    async def run(self, *, agent: str, message: str, runtime_env: Mapping[str, str], heartbeat: Heartbeat) -> list[str]:
        self.calls += 1
        if self.calls <= self._transient_failures:
            raise ConnectionError(f"model endpoint hiccup #{self.calls}")
        return await self._echo.run(agent=agent, message=message, runtime_env=runtime_env, heartbeat=heartbeat)


@contextlib.asynccontextmanager
async def running_workers(
    client: Client, *, store: Store, queues: TaskQueues, runner: AgentRunner | None = None
) -> AsyncIterator[list[Worker]]:
    workers = build_workers(
        client,
        store=store,
        runner=runner or CountingRunner(),
        queues=queues,
        graceful_shutdown_timeout=timedelta(seconds=1),
        sandbox=True,  # the determinism guard the server runs without
    )
    assert [w.task_queue for w in workers] == list(queues.all())
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield workers
    finally:
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(w.shutdown() for w in workers)), SHUTDOWN_BOUND)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), SHUTDOWN_BOUND)
        assert time.monotonic() - started < SHUTDOWN_BOUND
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


async def agent_result(client: Client, execution_id: str, *, wait: float = CALL_TIMEOUT) -> AgentExecutionResult:
    handle = client.get_workflow_handle(
        names.agent_execution_workflow_id(execution_id), result_type=AgentExecutionResult
    )
    return await asyncio.wait_for(handle.result(), wait)


async def wex_finished(client: Client, execution_id: str) -> None:
    handle = client.get_workflow_handle(names.workflow_execution_workflow_id(execution_id))
    await asyncio.wait_for(handle.result(), CALL_TIMEOUT + 5)


async def replay(client: Client, *workflow_ids: str) -> None:
    """Replaying real histories proves the workflow code is deterministic."""
    replayer = Replayer(workflows=[AgentExecutionWorkflow, WorkflowExecutionWorkflow, WorkflowValidationWorkflow])
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        await replayer.replay_workflow(history)


def create_wex(store: Store, document: dict[str, Any], *, input: str = "") -> WorkflowExecution:
    name = f"{document['name']}-{uuid.uuid4().hex[:8]}"
    workflow = store.create_workflow(name=name, document=json.dumps(document), valid=True)
    return store.create_workflow_execution(
        workflow=workflow,
        input=input,
        task_names_kinds=[(t["name"], t["kind"]) for t in document["tasks"]],
    )


def replies(record: AgentExecution) -> list[str]:
    return [m.text for m in record.messages[1:]]


# -- agent execution ---------------------------------------------------------------------------


async def test_agent_execution_completes_with_replies(client: Client, store: Store, queues: TaskQueues) -> None:
    aex = store.create_agent_execution(agent="echo", message="hi there")
    async with running_workers(client, store=store, queues=queues):
        workflow_id = await AgentExecutionCreator(client, queues=queues).start(aex.id, timeout=CALL_TIMEOUT)
        assert workflow_id == aex.workflow_id == f"stigmer/agent-execution/invoke/{aex.id}"
        result = await agent_result(client, aex.id)
    assert result == AgentExecutionResult(execution_id=aex.id, phase="COMPLETED", replies=["[echo] hi there"])
    record = store.get_agent_execution(aex.id)
    assert record.phase is Phase.COMPLETED
    assert [(m.role, m.text) for m in record.messages] == [("user", "hi there"), ("agent", "[echo] hi there")]
    assert record.started_at is not None and record.completed_at is not None
    assert record.error == ""
    await replay(client, workflow_id)


async def test_deliberate_agent_failure_is_recorded_and_not_retried(
    client: Client, store: Store, queues: TaskQueues
) -> None:
    runner = CountingRunner()
    aex = store.create_agent_execution(agent="echo", message="m", runtime_env={FAIL_ENV: "model said no"})
    async with running_workers(client, store=store, queues=queues, runner=runner):
        await AgentExecutionCreator(client, queues=queues).start(aex.id, timeout=CALL_TIMEOUT)
        result = await agent_result(client, aex.id)
    assert (result.phase, result.error) == ("FAILED", "model said no")
    record = store.get_agent_execution(aex.id)
    assert (record.phase, record.error, replies(record)) == (Phase.FAILED, "model said no", [])
    assert runner.calls == 1


async def test_transient_agent_error_is_retried(client: Client, store: Store, queues: TaskQueues) -> None:
    runner = CountingRunner(transient_failures=1)
    aex = store.create_agent_execution(agent="echo", message="again")
    async with running_workers(client, store=store, queues=queues, runner=runner):
        await AgentExecutionCreator(client, queues=queues).start(aex.id, timeout=CALL_TIMEOUT)
        result = await agent_result(client, aex.id)
    assert (result.phase, result.replies) == ("COMPLETED", ["[echo] again"])
    assert runner.calls == 2


async def test_repeated_start_is_a_no_op(client: Client, store: Store, queues: TaskQueues) -> None:
    runner = CountingRunner()
    aex = store.create_agent_execution(agent="echo", message="once", runtime_env={DELAY_ENV: "0.5"})
    creator = AgentExecutionCreator(client, queues=queues)
    async with running_workers(client, store=store, queues=queues, runner=runner):
        # Concurrent starts while it runs, then one more after it finished.
        await asyncio.gather(*(creator.start(aex.id, timeout=CALL_TIMEOUT) for _ in range(3)))
        first_run = (await client.get_workflow_handle(aex.workflow_id).describe()).run_id
        await agent_result(client, aex.id)
        await creator.start(aex.id, timeout=CALL_TIMEOUT)
        description = await client.get_workflow_handle(aex.workflow_id).describe()
    assert description.run_id == first_run
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert runner.calls == 1
    assert replies(store.get_agent_execution(aex.id)) == ["[echo] once"]


# -- workflow execution ------------------------------------------------------------------------

DOCUMENT: dict[str, Any] = {
    "name": "greet",
    "tasks": [
        {"name": "t1", "kind": "set", "values": {"k": "v", "n": "${input.n}"}},
        {"name": "t2", "kind": "wait", "seconds": 0.5},
        {"name": "t3", "kind": "agent", "agent": "echo", "message": "hello ${k} ${input.user}"},
        {"name": "t4", "kind": "set", "values": {"reply": "${tasks.t3.output}"}},
    ],
}


async def test_workflow_execution_runs_set_wait_agent(client: Client, store: Store, queues: TaskQueues) -> None:
    wex = create_wex(store, DOCUMENT, input='{"user": "Ada", "n": 3}')
    started = time.monotonic()
    async with running_workers(client, store=store, queues=queues):
        workflow_id = await WorkflowExecutionCreator(client, queues=queues).start(wex.id, timeout=CALL_TIMEOUT)
        assert workflow_id == wex.temporal_workflow_id
        await wex_finished(client, wex.id)
    assert time.monotonic() - started >= 0.5, "the wait task waited"
    record = store.get_workflow_execution(wex.id)
    assert (record.phase, record.error) == (Phase.COMPLETED, "")
    assert json.loads(record.output) == {"k": "v", "n": 3, "reply": ["[echo] hello v Ada"]}
    assert [(t.name, t.status, t.output, t.error) for t in record.tasks] == [
        ("t1", TaskStatus.COMPLETED, '{"k":"v","n":3}', ""),
        ("t2", TaskStatus.COMPLETED, "", ""),
        ("t3", TaskStatus.COMPLETED, '["[echo] hello v Ada"]', ""),
        ("t4", TaskStatus.COMPLETED, '{"reply":["[echo] hello v Ada"]}', ""),
    ]
    # The agent step is an agent execution of its own, linked to its parent, with a derived id.
    children = [a for a in store.list_agent_executions(page_size=500)[0] if a.parent_id == wex.id]
    assert [c.id for c in children] == [names.step_agent_execution_id(wex.id, "t3")]
    assert (children[0].phase, children[0].message) == (Phase.COMPLETED, "hello v Ada")
    await replay(client, workflow_id, children[0].workflow_id)


async def test_failing_agent_task_fails_the_workflow_naming_it(
    client: Client, store: Store, queues: TaskQueues
) -> None:
    document = {
        "name": "doomed",
        "tasks": [
            {"name": "prepare", "kind": "set", "values": {"why": "boom"}},
            {"name": "ask", "kind": "agent", "agent": "echo", "message": "hi", "runtime_env": {FAIL_ENV: "${why}"}},
            {"name": "after", "kind": "wait", "seconds": 30},
        ],
    }
    wex = create_wex(store, document)
    async with running_workers(client, store=store, queues=queues):
        await WorkflowExecutionCreator(client, queues=queues).start(wex.id, timeout=CALL_TIMEOUT)
        await wex_finished(client, wex.id)
    record = store.get_workflow_execution(wex.id)
    assert record.phase is Phase.FAILED
    assert record.error.startswith("task 'ask' failed: ") and "boom" in record.error, record.error
    assert [(t.name, t.status) for t in record.tasks] == [
        ("prepare", TaskStatus.COMPLETED),
        ("ask", TaskStatus.FAILED),
        ("after", TaskStatus.SKIPPED),
    ]
    assert "boom" in record.tasks[1].error
    child = store.get_agent_execution(names.step_agent_execution_id(wex.id, "ask"))
    assert (child.phase, child.error, child.parent_id) == (Phase.FAILED, "boom", wex.id)


async def test_unresolved_input_reference_fails_the_task(client: Client, store: Store, queues: TaskQueues) -> None:
    document = {"name": "needs-input", "tasks": [{"name": "s", "kind": "set", "values": {"u": "${input.user}"}}]}
    wex = create_wex(store, document, input="{}")
    async with running_workers(client, store=store, queues=queues):
        await WorkflowExecutionCreator(client, queues=queues).start(wex.id, timeout=CALL_TIMEOUT)
        await wex_finished(client, wex.id)
    record = store.get_workflow_execution(wex.id)
    assert record.phase is Phase.FAILED
    assert record.error == "task 's' failed: unresolved reference '${input.user}': input.user is not defined"
    assert record.tasks[0].status is TaskStatus.FAILED


async def test_bad_input_fails_the_execution_before_any_task(client: Client, store: Store, queues: TaskQueues) -> None:
    wex = create_wex(store, DOCUMENT, input="[1, 2]")
    async with running_workers(client, store=store, queues=queues):
        await WorkflowExecutionCreator(client, queues=queues).start(wex.id, timeout=CALL_TIMEOUT)
        await wex_finished(client, wex.id)
    record = store.get_workflow_execution(wex.id)
    assert (record.phase, record.error) == (Phase.FAILED, "cannot run: input: must be a JSON object, got array")
    assert {t.status for t in record.tasks} == {TaskStatus.PENDING}


# -- validation --------------------------------------------------------------------------------


async def test_validation_through_the_worker(client: Client, store: Store, queues: TaskQueues) -> None:
    validator = WorkflowValidator(client, queues=queues)
    bad = json.dumps({"name": "x", "tasks": [{"name": "a", "kind": "foo"}]})
    async with running_workers(client, store=store, queues=queues):
        good = await validator.validate(json.dumps(DOCUMENT), timeout=CALL_TIMEOUT)
        invalid = await validator.validate(bad, timeout=CALL_TIMEOUT)
    assert (good.valid, good.errors) == (True, [])
    assert (invalid.valid, invalid.errors) == (
        False,
        ["tasks[0].kind: unknown kind 'foo' (expected one of agent, set, wait)"],
    )


async def test_validation_without_a_worker_times_out_as_unavailable(client: Client, queues: TaskQueues) -> None:
    started = time.monotonic()
    with pytest.raises(TemporalUnavailableError, match="did not answer within 1 s"):
        await WorkflowValidator(client, queues=queues).validate(json.dumps(DOCUMENT), timeout=1.0)
    assert time.monotonic() - started < 3


async def test_oversized_document_is_rejected_without_temporal(queues: TaskQueues) -> None:
    # No client at all: any attempt to reach Temporal would raise AttributeError.
    validator = WorkflowValidator(None, queues=queues)  # type: ignore[arg-type]
    result = await validator.validate("x" * (1024 * 1024 + 1), timeout=1.0)
    assert not result.valid
    assert result.errors == ["document: 1048577 bytes exceeds the limit of 1048576 bytes (1 MiB)"]


# -- Temporal down -----------------------------------------------------------------------------


async def test_creators_raise_temporal_unavailable_fast_when_temporal_is_gone(
    temporal_dev_server_factory: TemporalDevServerFactory, queues: TaskQueues
) -> None:
    server = temporal_dev_server_factory(wait=False)
    await server.wait_ready_async()
    client = await asyncio.wait_for(Client.connect(server.address), CALL_TIMEOUT)
    server.kill()
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "agent": lambda: AgentExecutionCreator(client, queues=queues).start("aex-gone", timeout=1.0),
        "workflow": lambda: WorkflowExecutionCreator(client, queues=queues).start("wex-gone", timeout=1.0),
        "validate": lambda: WorkflowValidator(client, queues=queues).validate(json.dumps(DOCUMENT), timeout=1.0),
    }
    for what, call in calls.items():
        started = time.monotonic()
        with pytest.raises(TemporalUnavailableError):
            await call()
        elapsed = time.monotonic() - started
        assert elapsed < 3, f"{what} took {elapsed:.2f}s"


# -- activities on their own (no Temporal) -----------------------------------------------------


async def test_step_agent_execution_is_created_once(store: Store) -> None:
    wex = create_wex(store, DOCUMENT)
    activities = WorkflowExecutionActivities(store=store)
    request = CreateStepAgentExecutionInput(
        workflow_execution_id=wex.id, task_name="t3", agent="echo", message="m", runtime_env={"A": "1"}
    )
    first = await activities.create_step_agent_execution(request)
    second = await activities.create_step_agent_execution(request)  # a retry after a lost reply
    assert first == second == names.step_agent_execution_id(wex.id, "t3")
    assert [a.id for a in store.list_agent_executions()[0]] == [first]
    record = store.get_agent_execution(first)
    assert (record.parent_id, record.runtime_env, record.phase) == (wex.id, {"A": "1"}, Phase.PENDING)


async def test_a_missing_record_ends_the_workflow_quietly(store: Store) -> None:
    # Found by the chaos soak: a create whose start reply was lost removes its record, and the
    # workflow's first activity then logged a WARN with a full traceback ("Completing activity as
    # failed"). BENIGN makes the SDK log it at DEBUG; the activity says it in one line instead.
    activities = AgentExecutionActivities(store=store, runner=EchoAgentRunner())
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities.mark_started, "aex-gone")
    error = caught.value
    assert (error.type, error.non_retryable) == ("NotFound", True)
    assert error.category is ApplicationErrorCategory.BENIGN


@pytest.mark.parametrize(
    "lost", [ActivityCancellationDetails(not_found=True), ActivityCancellationDetails(timed_out=True)]
)
async def test_an_agent_run_temporal_gave_up_on_ends_quietly(store: Store, lost: ActivityCancellationDetails) -> None:
    # Found by the chaos soak: after an in-memory Temporal restarted, the core cancelled a running
    # agent (NOT_FOUND), and the SDK logged that cancel as a failure with a full traceback.
    env = ActivityEnvironment()
    activities = AgentExecutionActivities(store=store, runner=EchoAgentRunner(heartbeat_interval=0.05))
    env.on_heartbeat = lambda *details: env.cancel(lost)
    request = RunAgentInput(execution_id="aex-x", agent="echo", message="m", runtime_env={DELAY_ENV: "5"})
    with pytest.raises(ApplicationError) as caught:
        await env.run(activities.run_agent, request)
    assert caught.value.category is ApplicationErrorCategory.BENIGN
    assert caught.value.type == "AttemptAbandoned"


async def test_a_requested_cancel_of_an_agent_run_stays_a_cancel(store: Store) -> None:
    env = ActivityEnvironment()
    activities = AgentExecutionActivities(store=store, runner=EchoAgentRunner(heartbeat_interval=0.05))
    env.on_heartbeat = lambda *details: env.cancel()
    request = RunAgentInput(execution_id="aex-x", agent="echo", message="m", runtime_env={DELAY_ENV: "5"})
    with pytest.raises(asyncio.CancelledError):
        await env.run(activities.run_agent, request)


async def test_run_agent_activity_heartbeats(store: Store) -> None:
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    activities = AgentExecutionActivities(store=store, runner=EchoAgentRunner(heartbeat_interval=0.05))
    request = RunAgentInput(execution_id="aex-x", agent="echo", message="m", runtime_env={DELAY_ENV: "0.2"})
    assert await env.run(activities.run_agent, request) == ["[echo] m"]
    assert len(beats) >= 4


async def test_workers_stop_mid_agent_and_fresh_workers_finish_it(
    client: Client, store: Store, queues: TaskQueues
) -> None:
    """What a reconnect does: old workers shut down (bounded) with an agent running; new ones finish it."""
    aex = store.create_agent_execution(agent="echo", message="slow", runtime_env={DELAY_ENV: "30"})
    runner = CountingRunner()
    async with running_workers(client, store=store, queues=queues, runner=runner):
        await AgentExecutionCreator(client, queues=queues).start(aex.id, timeout=CALL_TIMEOUT)
        # Wait for the agent itself to run (IN_PROGRESS alone is too early: the workflow task
        # that schedules the agent may still be in flight, and a worker shut down holding a
        # workflow task stalls that workflow for the 10 s workflow task timeout -- measured).
        await eventually(lambda: runner.calls == 1, what="the agent to start")
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5, "shutdown waited for the 30 s agent"
    # The interrupted attempt fails at shutdown and is retried (after its 1 s backoff) on the
    # next workers, which get a runner that ignores the delay. Measured: done 2.1 s after stopping.
    assert store.get_agent_execution(aex.id).phase is Phase.IN_PROGRESS
    async with running_workers(client, store=store, queues=queues, runner=NoDelayRunner()):
        result = await agent_result(client, aex.id, wait=8)
    assert (result.phase, result.replies) == ("COMPLETED", ["[echo] slow"])


class NoDelayRunner:
    async def run(self, *, agent: str, message: str, runtime_env: Mapping[str, str], heartbeat: Heartbeat) -> list[str]:
        env = {k: v for k, v in runtime_env.items() if k != DELAY_ENV}
        return await EchoAgentRunner().run(agent=agent, message=message, runtime_env=env, heartbeat=heartbeat)
