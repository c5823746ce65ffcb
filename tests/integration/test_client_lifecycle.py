"""stigmer.client's cancel, delete, request ids and list filters against a real server and a real
Temporal: a running agent is cancelled and says by whom and why, deletes follow the API's rules,
a create retried with its request id returns the first record, and the filters filter."""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from stigmer.client import (
    AlreadyExistsError,
    AsyncClient,
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Phase,
    TaskStatus,
)
from stigmer.temporal import names
from stigmer.temporal.agents import DELAY_ENV
from stigmer.testing.eventually import wait_until
from stigmer.testing.server import StigmerServerProcess

pytestmark = pytest.mark.temporal

SLOW = {DELAY_ENV: "60"}  # the echo agent heartbeats for a minute: long enough to be cancelled mid-run


def document(name: str, *tasks: dict[str, object]) -> str:
    return json.dumps({"name": name, "tasks": list(tasks)})


NAP = {"name": "nap", "kind": "wait", "seconds": 60}
ASK = {"name": "ask", "kind": "agent", "agent": "echo", "message": "hi", "runtime_env": SLOW}
DONE = {"name": "greet", "kind": "set", "values": {"greeting": "hello"}}


@pytest.fixture
def server(temporal, stigmer_server_factory, monkeypatch: pytest.MonkeyPatch) -> StigmerServerProcess:
    """A server on the session's Temporal, with task queues of its own (the dev server is shared)."""
    suffix = uuid.uuid4().hex[:10]
    for env in (
        names.AGENT_EXECUTION_QUEUE_ENV,
        names.WORKFLOW_EXECUTION_QUEUE_ENV,
        names.WORKFLOW_VALIDATION_QUEUE_ENV,
    ):
        monkeypatch.setenv(env, f"{env.lower()}-{suffix}")
    srv: StigmerServerProcess = stigmer_server_factory(temporal=temporal.address)
    return srv


@pytest.fixture
def client(server: StigmerServerProcess):
    with Client(address=server.address, timeout=10) as c:
        c.wait_temporal_connected(timeout=30)
        yield c


def test_cancel_a_running_agent_execution(client: Client) -> None:
    running = client.create_agent_execution(agent="echo", message="slow", runtime_env=SLOW)
    client.wait_for_phase(running.id, [Phase.IN_PROGRESS], timeout=30)
    asked = client.cancel_agent_execution(running.id, reason="changed my mind")
    assert asked.cancel_requested_at is not None and asked.cancel_reason == "changed my mind"
    assert asked.cancelled_by == f"{getpass.getuser()}@{socket.gethostname()}"
    done = client.wait_for_phase(running.id, [Phase.CANCELLED], timeout=30)
    assert done.phase is Phase.CANCELLED and done.completed_at is not None
    assert (done.cancelled_by, done.cancel_reason) == (asked.cancelled_by, "changed my mind")
    assert done.cancel_requested_at == asked.cancel_requested_at
    with pytest.raises(FailedPreconditionError, match="CANCELLED"):  # a terminal phase never changes
        client.cancel_agent_execution(running.id)


def test_cancel_and_wait_returns_the_terminal_record(client: Client) -> None:
    running = client.create_agent_execution(agent="echo", message="slow", runtime_env=SLOW)
    client.wait_for_phase(running.id, [Phase.IN_PROGRESS], timeout=30)
    done = client.cancel_agent_execution(running.id, requested_by="ops-bot", wait=True, wait_timeout=30)
    assert done.phase is Phase.CANCELLED and done.cancelled_by == "ops-bot" and done.cancel_reason == ""
    finished = client.create_agent_execution(agent="echo", message="quick")
    client.wait_for_phase(finished.id, [Phase.COMPLETED], timeout=30)
    with pytest.raises(FailedPreconditionError, match="COMPLETED"):
        client.cancel_agent_execution(finished.id, wait=True)
    with pytest.raises(NotFoundError):
        client.cancel_agent_execution("aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD")


def test_delete_finished_twice_unfinished_and_with_force(client: Client) -> None:
    finished = client.create_agent_execution(agent="echo", message="quick")
    done = client.wait_for_phase(finished.id, [Phase.COMPLETED], timeout=30)
    deleted = client.delete_agent_execution(finished.id)
    assert deleted.id == finished.id and deleted.phase is Phase.COMPLETED and deleted.replies == done.replies
    with pytest.raises(NotFoundError):
        client.get_agent_execution(finished.id)
    with pytest.raises(NotFoundError):  # deleted already
        client.delete_agent_execution(finished.id)

    running = client.create_agent_execution(agent="echo", message="slow", runtime_env=SLOW)
    client.wait_for_phase(running.id, [Phase.IN_PROGRESS], timeout=30)
    with pytest.raises(FailedPreconditionError, match="force"):
        client.delete_agent_execution(running.id)
    assert client.get_agent_execution(running.id).phase is Phase.IN_PROGRESS  # refused: nothing changed
    forced = client.delete_agent_execution(running.id, force=True)
    assert forced.id == running.id and forced.phase is Phase.CANCELLED
    with pytest.raises(NotFoundError):
        client.get_agent_execution(running.id)


def test_a_create_retried_with_its_request_id_returns_the_first_record(client: Client) -> None:
    request_id = str(uuid.uuid4())
    first = client.create_agent_execution(agent="echo", message="once", request_id=request_id)
    again = client.create_agent_execution(agent="echo", message="once", request_id=request_id)
    assert again.id == first.id and again.request_id == first.request_id == request_id
    with pytest.raises(AlreadyExistsError, match=first.id):
        client.create_agent_execution(agent="echo", message="another body", request_id=request_id)
    # Without one, each call gets a fresh UUID of its own; "" asks for no deduplication.
    one, two = (client.create_agent_execution(agent="echo", message="once") for _ in range(2))
    assert one.id != two.id and uuid.UUID(one.request_id) != uuid.UUID(two.request_id)
    assert client.create_agent_execution(agent="echo", message="once", request_id="").request_id == ""
    with pytest.raises(InvalidArgumentError) as bad:
        client.create_agent_execution(agent="echo", message="once", request_id="not-a-uuid")
    assert bad.value.field == "request_id"
    assert len([e for e in client.list_agent_executions(agent="echo") if e.message == "once"]) == 4

    doc = document("idempotent", DONE)
    workflow = client.create_workflow(doc, request_id=request_id)  # request ids are per kind
    assert client.create_workflow(doc, request_id=request_id).id == workflow.id
    assert workflow.request_id == request_id
    with pytest.raises(AlreadyExistsError):
        client.create_workflow(document("idempotent-2", DONE), request_id=request_id)
    run = client.create_workflow_execution(workflow="idempotent", input="{}", request_id=request_id)
    by_id = client.create_workflow_execution(workflow=workflow.id, input="{}", request_id=request_id)
    assert by_id.id == run.id and run.request_id == request_id  # the body compares the resolved workflow id
    with pytest.raises(AlreadyExistsError):
        client.create_workflow_execution(workflow="idempotent", input='{"x": 1}', request_id=request_id)


def test_cancel_a_workflow_execution_and_its_agent_step(client: Client) -> None:
    client.create_workflow(document("slow-agent", DONE, ASK, NAP))
    execution = client.create_workflow_execution(workflow="slow-agent")
    step = wait_for_step(client, execution.id)
    done = client.cancel_workflow_execution(execution.id, reason="enough", wait=True, wait_timeout=30)
    assert done.phase is Phase.CANCELLED and done.cancel_reason == "enough"
    assert [t.status for t in done.tasks] == [TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.SKIPPED]
    stopped = client.wait_for_phase(step, [Phase.CANCELLED], timeout=30)
    assert stopped.parent_id == execution.id
    with pytest.raises(FailedPreconditionError):
        client.cancel_workflow_execution(execution.id)

    napping = client.create_workflow(document("nap", NAP))
    sleeper = client.create_workflow_execution(workflow=napping.id)
    client.wait_for_phase(sleeper.id, [Phase.IN_PROGRESS], timeout=30)
    asked = client.cancel_workflow_execution(sleeper.id)
    assert asked.cancel_requested_at is not None and "@" in asked.cancelled_by
    ended = client.wait_for_phase(sleeper.id, [Phase.CANCELLED], timeout=30)
    assert [t.status for t in ended.tasks] == [TaskStatus.CANCELLED]


def wait_for_step(client: Client, execution_id: str) -> str:
    """The id of the agent execution a workflow execution's agent step started, once it runs."""

    def running_step() -> str:
        steps = [e.id for e in client.list_agent_executions(parent_id=execution_id) if e.phase is Phase.IN_PROGRESS]
        return steps[0] if steps else ""

    return wait_until(running_step, timeout=30, interval=0.1, what=f"the agent step of {execution_id} to run")


def test_delete_workflow_executions_and_workflows(client: Client) -> None:
    client.create_workflow(document("deletable", DONE, ASK))
    running = client.create_workflow_execution(workflow="deletable")
    step = wait_for_step(client, running.id)
    with pytest.raises(FailedPreconditionError):
        client.delete_workflow_execution(running.id)
    with pytest.raises(FailedPreconditionError, match=f"1 unfinished execution \\(oldest {running.id}\\)"):
        client.delete_workflow("deletable")
    forced = client.delete_workflow_execution(running.id, force=True)
    assert forced.phase is Phase.CANCELLED
    with pytest.raises(NotFoundError):
        client.get_agent_execution(step)  # its steps went with it
    assert list(client.list_agent_executions(parent_id=running.id)) == []

    quick = client.create_workflow(document("quick", DONE))
    finished = client.create_workflow_execution(workflow="quick")
    client.wait_for_phase(finished.id, [Phase.COMPLETED], timeout=30)
    assert client.delete_workflow_execution(finished.id).phase is Phase.COMPLETED
    with pytest.raises(NotFoundError):
        client.delete_workflow_execution(finished.id)

    kept = client.create_workflow_execution(workflow="quick")
    client.wait_for_phase(kept.id, [Phase.COMPLETED], timeout=30)
    gone = client.delete_workflow("quick")
    assert (gone.id, gone.name) == (quick.id, "quick")
    with pytest.raises(NotFoundError):
        client.get_workflow("quick")
    with pytest.raises(NotFoundError):
        client.delete_workflow(quick.id)
    assert client.get_workflow_execution(kept.id).phase is Phase.COMPLETED  # finished executions are kept
    assert client.create_workflow(document("quick", DONE)).id != quick.id  # the name can be used again
    assert client.delete_workflow("deletable").name == "deletable"  # nothing runs any more


def test_list_filters_on_every_page(client: Client) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    ones = [client.create_agent_execution(agent="one", message=f"m{n}") for n in range(3)]
    client.create_agent_execution(agent="two", message="m")
    assert [e.id for e in client.list_agent_executions(agent="one", page_size=1)] == [e.id for e in reversed(ones)]
    page = client.list_agent_executions_page(agent="one", page_size=2)
    assert len(page.items) == 2 and page.next_page_token
    rest = client.list_agent_executions_page(agent="one", page_size=2, page_token=page.next_page_token)
    assert [e.id for e in rest.items] == [ones[0].id] and not rest.next_page_token
    after_first = ones[0].created_at
    assert after_first is not None
    later = [e.id for e in client.list_agent_executions(agent="one", created_after=after_first, page_size=1)]
    assert later == [ones[2].id, ones[1].id]  # strictly after
    naive = after_first.astimezone(UTC).replace(tzinfo=None)  # naive datetimes are UTC
    assert [e.id for e in client.list_agent_executions(agent="one", created_after=naive)] == later
    assert len(list(client.list_agent_executions(created_after=before))) == 4
    assert list(client.list_agent_executions(created_after=datetime.now(UTC) + timedelta(hours=1))) == []
    assert list(client.list_agent_executions(agent="nobody")) == []

    flow = client.create_workflow(document("listed", DONE))
    client.create_workflow(document("other", DONE))
    runs = [client.create_workflow_execution(workflow="listed") for _ in range(2)]
    client.create_workflow_execution(workflow="other")
    expected = [r.id for r in reversed(runs)]
    assert [e.id for e in client.list_workflow_executions(workflow="listed", page_size=1)] == expected
    assert [e.id for e in client.list_workflow_executions(workflow=flow.id)] == expected
    assert [e.id for e in client.list_workflow_executions(workflow="listed", created_after=runs[0].created_at)] == [
        runs[1].id
    ]
    for run in runs:
        client.wait_for_phase(run.id, ["COMPLETED"], timeout=30)
    assert [e.id for e in client.list_workflow_executions(workflow="listed", phase="COMPLETED")] == expected
    assert list(client.list_workflow_executions(workflow="listed", phase="FAILED")) == []
    with pytest.raises(TypeError):
        client.list_agent_executions_page(created_after="yesterday")  # type: ignore[arg-type]


async def test_the_async_client_cancels_and_deletes(server: StigmerServerProcess) -> None:
    async with AsyncClient(address=server.address, timeout=10) as client:
        await client.wait_temporal_connected(timeout=30)
        running = await client.create_agent_execution(agent="echo", message="slow", runtime_env=SLOW)
        await client.wait_for_phase(running.id, ["IN_PROGRESS"], timeout=30)
        done = await client.cancel_agent_execution(running.id, reason="async", wait=True, wait_timeout=30)
        assert done.phase is Phase.CANCELLED and done.cancel_reason == "async"
        assert (await client.delete_agent_execution(running.id)).id == running.id
        assert [e.id async for e in client.list_agent_executions(agent="echo")] == []
        workflow = await client.create_workflow(document("async-flow", DONE))
        assert (await client.delete_workflow(workflow.name)).id == workflow.id
