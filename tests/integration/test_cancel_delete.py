"""Cancel, Delete, request ids and List filters through the gRPC API, against a real Temporal dev server.

The stack is test_servicers' (real servicers, controllers, store, connection and workers); every
workflow runs under the SDK's sandbox. A cancelled execution's workflow closes normally (it records
CANCELLED as data), which Temporal shows as COMPLETED: that is checked, so "CANCELLED" in the store
always means nothing runs any more.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import grpc
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from stigmer.api import agent_execution_pb2, common_pb2, workflow_execution_pb2, workflow_pb2
from stigmer.errors import UNAVAILABLE_MESSAGE
from stigmer.store import AGENT_EXECUTION, Phase
from stigmer.temporal.agents import DELAY_ENV
from stigmer.testing.eventually import eventually
from tests.integration.connection_rig import fast_settings
from tests.integration.test_servicers import CALL, WATCH, Stack, down_settings, rpc_error, serving, watch_all

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(90)]

AEX = agent_execution_pb2
WEX = workflow_execution_pb2


def slow_agent(seconds: float = 60.0, **more: Any) -> Any:
    return AEX.CreateAgentExecutionRequest(agent="echo", message="slow", runtime_env={DELAY_ENV: str(seconds)}, **more)


async def running(stack: Stack, id: str) -> None:
    async def in_progress() -> bool:
        got = await stack.agent_executions.Get(AEX.GetAgentExecutionRequest(id=id), timeout=CALL)
        return got.phase == common_pb2.IN_PROGRESS

    await eventually(in_progress, timeout=20, what=f"{id} IN_PROGRESS")


async def final(stack: Stack, id: str) -> Any:
    stream = await watch_all(stack.agent_executions.Watch(AEX.WatchAgentExecutionRequest(id=id), timeout=WATCH))
    return stream[-1]


async def final_wex(stack: Stack, id: str) -> Any:
    stream = await watch_all(stack.workflow_executions.Watch(WEX.WatchWorkflowExecutionRequest(id=id), timeout=WATCH))
    return stream[-1]


async def temporal_status(address: str, workflow_id: str) -> WorkflowExecutionStatus | None:
    client = await Client.connect(address)
    description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=_td(CALL))
    return description.status


async def closes_normally(address: str, workflow_id: str) -> None:
    """Its workflow closes COMPLETED soon (it records the terminal phase first, then returns)."""

    async def completed() -> bool:
        return await temporal_status(address, workflow_id) == WorkflowExecutionStatus.COMPLETED

    await eventually(completed, timeout=10, what=f"{workflow_id} COMPLETED in Temporal")


async def workflow_runs(address: str, workflow_id: str) -> int:
    """Runs Temporal lists for the id, once its (eventually consistent) visibility shows any."""
    client = await Client.connect(address)

    async def listed() -> int:
        return len([w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"', rpc_timeout=_td(CALL))])

    return await eventually(listed, timeout=10, what=f"{workflow_id} in Temporal's list")


def _td(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


def wex_document(name: str, tasks: list[dict[str, Any]]) -> str:
    return json.dumps({"name": name, "tasks": tasks})


async def stored_workflow(stack: Stack, tasks: list[dict[str, Any]]) -> Any:
    name = f"flow-{uuid.uuid4().hex[:8]}"
    return await stack.workflows.Create(
        workflow_pb2.CreateWorkflowRequest(document=wex_document(name, tasks)), timeout=CALL
    )


# ---------------------------------------------------------------------------------------- cancel


async def test_cancel_stops_a_running_agent_and_records_who_and_why(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        created = await stack.agent_executions.Create(slow_agent(), timeout=CALL)
        await running(stack, created.id)
        asked_at = time.monotonic()
        asked = await stack.agent_executions.Cancel(
            AEX.CancelAgentExecutionRequest(id=created.id, reason="wrong agent", requested_by="ann@box"), timeout=CALL
        )
        assert asked.HasField("cancel_requested_at")
        assert (asked.cancelled_by, asked.cancel_reason) == ("ann@box", "wrong agent")
        done = await final(stack, created.id)
        stopped_after = time.monotonic() - asked_at
        assert done.phase == common_pb2.CANCELLED
        assert done.error == "cancelled by ann@box: wrong agent"
        assert done.HasField("completed_at")
        # The workflow waited for the agent's activity to stop, then closed normally.
        await closes_normally(temporal.address, created.temporal_workflow_id)
        assert stopped_after < 10, f"an agent heartbeating every 0.1 s took {stopped_after:.1f} s to stop"
        # Again: the execution is terminal now.
        error = await rpc_error(
            stack.agent_executions.Cancel(AEX.CancelAgentExecutionRequest(id=created.id), timeout=CALL)
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "already CANCELLED" in (error.details() or "")


async def test_cancel_bad_input_answers_with_the_field_or_the_id(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        missing = "aex-01JBQ7ZK3M4N5P6Q7R8S9T0V1W"
        error = await rpc_error(
            stack.agent_executions.Cancel(AEX.CancelAgentExecutionRequest(id=missing), timeout=CALL)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND and missing in (error.details() or "")
        error = await rpc_error(stack.agent_executions.Cancel(AEX.CancelAgentExecutionRequest(id="nope"), timeout=CALL))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("id:")
        created = await stack.agent_executions.Create(slow_agent(), timeout=CALL)
        error = await rpc_error(
            stack.agent_executions.Cancel(
                AEX.CancelAgentExecutionRequest(id=created.id, reason="x" * 5000), timeout=CALL
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("reason:")
        done = await stack.agent_executions.Cancel(AEX.CancelAgentExecutionRequest(id=created.id), timeout=CALL)
        assert done.cancelled_by == "anonymous"


async def test_with_temporal_down_a_pending_execution_is_cancelled_locally_a_running_one_is_unavailable(
    tmp_path,
) -> None:
    async with serving(down_settings(), tmp_path / "data") as stack:
        pending = stack.store.create_agent_execution(agent="echo", message="never ran")
        started = stack.store.create_agent_execution(agent="echo", message="was running")
        stack.store.mark_agent_execution_started(started.id)

        done = await stack.agent_executions.Cancel(
            AEX.CancelAgentExecutionRequest(id=pending.id, requested_by="ann"), timeout=CALL
        )
        assert done.phase == common_pb2.CANCELLED and done.cancelled_by == "ann"

        error = await rpc_error(
            stack.agent_executions.Cancel(
                AEX.CancelAgentExecutionRequest(id=started.id, requested_by="ann"), timeout=CALL
            )
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == UNAVAILABLE_MESSAGE
        untouched = stack.store.get_agent_execution(started.id)
        assert untouched.phase is Phase.IN_PROGRESS and untouched.cancel_requested_at is None


async def test_cancelling_a_workflow_execution_cancels_its_running_step(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        flow = await stored_workflow(
            stack,
            [
                {"name": "first", "kind": "set", "values": {"a": 1}},
                {"name": "ask", "kind": "agent", "agent": "echo", "message": "hi", "runtime_env": {DELAY_ENV: "60"}},
                {"name": "after", "kind": "set", "values": {"b": 2}},
            ],
        )
        wex = await stack.workflow_executions.Create(WEX.CreateWorkflowExecutionRequest(workflow=flow.id), timeout=CALL)

        async def step_running() -> str:
            page = await stack.agent_executions.List(AEX.ListAgentExecutionsRequest(parent_id=wex.id), timeout=CALL)
            return next((e.id for e in page.executions if e.phase == common_pb2.IN_PROGRESS), "")

        step_id = await eventually(step_running, timeout=20, what="the agent step running")
        await stack.workflow_executions.Cancel(
            WEX.CancelWorkflowExecutionRequest(id=wex.id, reason="enough", requested_by="ann"), timeout=CALL
        )
        done = await final_wex(stack, wex.id)
        assert done.phase == common_pb2.CANCELLED and done.cancelled_by == "ann"
        statuses = [WEX.TaskState.TaskStatus.Name(t.status) for t in done.tasks]
        assert statuses == ["COMPLETED", "CANCELLED", "SKIPPED"]
        step = await final(stack, step_id)
        assert step.phase == common_pb2.CANCELLED and step.cancelled_by == "ann" and wex.id in step.error
        await closes_normally(temporal.address, wex.temporal_workflow_id)
        await closes_normally(temporal.address, step.temporal_workflow_id)


async def test_cancelling_a_workflow_execution_during_a_wait(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        flow = await stored_workflow(
            stack,
            [{"name": "nap", "kind": "wait", "seconds": 600}, {"name": "after", "kind": "set", "values": {"b": 1}}],
        )
        wex = await stack.workflow_executions.Create(
            WEX.CreateWorkflowExecutionRequest(workflow=flow.name), timeout=CALL
        )

        async def napping() -> bool:
            got = await stack.workflow_executions.Get(WEX.GetWorkflowExecutionRequest(id=wex.id), timeout=CALL)
            return got.tasks[0].status == WEX.TaskState.RUNNING

        await eventually(napping, timeout=20, what="the wait task running")
        await stack.workflow_executions.Cancel(WEX.CancelWorkflowExecutionRequest(id=wex.id), timeout=CALL)
        done = await final_wex(stack, wex.id)
        assert done.phase == common_pb2.CANCELLED
        assert [WEX.TaskState.TaskStatus.Name(t.status) for t in done.tasks] == ["CANCELLED", "SKIPPED"]


async def test_cancelling_one_step_fails_its_workflow_execution(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        flow = await stored_workflow(
            stack,
            [{"name": "ask", "kind": "agent", "agent": "echo", "message": "hi", "runtime_env": {DELAY_ENV: "60"}}],
        )
        wex = await stack.workflow_executions.Create(WEX.CreateWorkflowExecutionRequest(workflow=flow.id), timeout=CALL)

        async def step_running() -> str:
            page = await stack.agent_executions.List(AEX.ListAgentExecutionsRequest(parent_id=wex.id), timeout=CALL)
            return next((e.id for e in page.executions if e.phase == common_pb2.IN_PROGRESS), "")

        step_id = await eventually(step_running, timeout=20, what="the agent step running")
        await stack.agent_executions.Cancel(
            AEX.CancelAgentExecutionRequest(id=step_id, requested_by="bob"), timeout=CALL
        )
        done = await final_wex(stack, wex.id)
        assert done.phase == common_pb2.FAILED
        assert "CANCELLED" in done.error and "bob" in done.error
        assert (await final(stack, step_id)).phase == common_pb2.CANCELLED


# ---------------------------------------------------------------------------------------- delete


async def test_delete_finished_unfinished_twice_and_with_force(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        quick = await stack.agent_executions.Create(
            AEX.CreateAgentExecutionRequest(agent="echo", message="hi"), timeout=CALL
        )
        finished = await final(stack, quick.id)
        deleted = await stack.agent_executions.Delete(AEX.DeleteAgentExecutionRequest(id=quick.id), timeout=CALL)
        assert deleted == finished
        error = await rpc_error(
            stack.agent_executions.Delete(AEX.DeleteAgentExecutionRequest(id=quick.id), timeout=CALL)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND and quick.id in (error.details() or "")

        slow = await stack.agent_executions.Create(slow_agent(), timeout=CALL)
        error = await rpc_error(
            stack.agent_executions.Delete(AEX.DeleteAgentExecutionRequest(id=slow.id), timeout=CALL)
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "PENDING" in (error.details() or "") or "IN_PROGRESS" in (error.details() or "")
        await running(stack, slow.id)
        gone = await stack.agent_executions.Delete(
            AEX.DeleteAgentExecutionRequest(id=slow.id, force=True), timeout=WATCH
        )
        assert gone.phase == common_pb2.CANCELLED and gone.cancel_reason == "deleted with force"
        await closes_normally(temporal.address, slow.temporal_workflow_id)
        error = await rpc_error(stack.agent_executions.Get(AEX.GetAgentExecutionRequest(id=slow.id), timeout=CALL))
        assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_workflow_execution_takes_its_steps_and_delete_workflow_frees_the_name(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        tasks = [{"name": "ask", "kind": "agent", "agent": "echo", "message": "hi", "runtime_env": {DELAY_ENV: "60"}}]
        flow = await stored_workflow(stack, tasks)
        wex = await stack.workflow_executions.Create(WEX.CreateWorkflowExecutionRequest(workflow=flow.id), timeout=CALL)
        error = await rpc_error(
            stack.workflows.Delete(workflow_pb2.DeleteWorkflowRequest(id_or_name=flow.name), timeout=CALL)
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and wex.id in (error.details() or "")

        gone = await stack.workflow_executions.Delete(
            WEX.DeleteWorkflowExecutionRequest(id=wex.id, force=True), timeout=WATCH
        )
        assert gone.phase == common_pb2.CANCELLED
        steps = await stack.agent_executions.List(AEX.ListAgentExecutionsRequest(parent_id=wex.id), timeout=CALL)
        assert list(steps.executions) == []

        deleted = await stack.workflows.Delete(workflow_pb2.DeleteWorkflowRequest(id_or_name=flow.name), timeout=CALL)
        assert deleted.id == flow.id
        error = await rpc_error(
            stack.workflows.Delete(workflow_pb2.DeleteWorkflowRequest(id_or_name=flow.id), timeout=CALL)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        again = await stack.workflows.Create(
            workflow_pb2.CreateWorkflowRequest(document=wex_document(flow.name, tasks)), timeout=CALL
        )
        assert again.id != flow.id and again.name == flow.name


# ---------------------------------------------------------------------------------------- request ids


async def test_a_retried_create_returns_the_first_execution_and_starts_one_workflow(temporal, tmp_path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()
        request_id = str(uuid.uuid4())
        first = await stack.agent_executions.Create(
            AEX.CreateAgentExecutionRequest(agent="echo", message="once", request_id=request_id), timeout=CALL
        )
        again = await stack.agent_executions.Create(
            AEX.CreateAgentExecutionRequest(agent="echo", message="once", request_id=request_id.upper()), timeout=CALL
        )
        assert again.id == first.id and first.request_id == request_id
        assert await workflow_runs(temporal.address, first.temporal_workflow_id) == 1
        listed = await stack.agent_executions.List(AEX.ListAgentExecutionsRequest(), timeout=CALL)
        assert [e.id for e in listed.executions] == [first.id]

        error = await rpc_error(
            stack.agent_executions.Create(
                AEX.CreateAgentExecutionRequest(agent="echo", message="other", request_id=request_id), timeout=CALL
            )
        )
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS and first.id in (error.details() or "")
        error = await rpc_error(
            stack.agent_executions.Create(
                AEX.CreateAgentExecutionRequest(agent="echo", message="m", request_id="not-a-uuid"), timeout=CALL
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("request_id:")

        flow_request = str(uuid.uuid4())
        doc = wex_document(f"flow-{uuid.uuid4().hex[:8]}", [{"name": "s", "kind": "set", "values": {"v": 1}}])
        flow = await stack.workflows.Create(
            workflow_pb2.CreateWorkflowRequest(document=doc, request_id=flow_request), timeout=CALL
        )
        flow_again = await stack.workflows.Create(
            workflow_pb2.CreateWorkflowRequest(document=doc, request_id=flow_request), timeout=CALL
        )
        assert flow_again.id == flow.id
        wex_request = str(uuid.uuid4())
        wex = await stack.workflow_executions.Create(
            WEX.CreateWorkflowExecutionRequest(workflow=flow.name, input="{}", request_id=wex_request), timeout=CALL
        )
        wex_again = await stack.workflow_executions.Create(
            WEX.CreateWorkflowExecutionRequest(workflow=flow.id, input="{}", request_id=wex_request), timeout=CALL
        )
        assert wex_again.id == wex.id  # the name and the id resolve to the same workflow: the same body
        assert await workflow_runs(temporal.address, wex.temporal_workflow_id) == 1


async def test_a_retry_of_an_acknowledged_create_is_answered_while_temporal_is_down(tmp_path) -> None:
    async with serving(down_settings(), tmp_path / "data") as stack:
        from stigmer.store import RequestKey, body_digest

        request_id = str(uuid.uuid4())
        body = {"agent": "echo", "message": "m", "runtime_env": {}}
        made = stack.store.create_agent_execution(
            agent="echo", message="m", request=RequestKey(request_id, body_digest(body))
        )
        stack.store.mark_agent_execution_started(made.id)
        again = await stack.agent_executions.Create(
            AEX.CreateAgentExecutionRequest(agent="echo", message="m", request_id=request_id), timeout=CALL
        )
        assert again.id == made.id and again.phase == common_pb2.IN_PROGRESS


# ---------------------------------------------------------------------------------------- reconciler


async def test_the_reconciler_finishes_cancels_and_never_restarts_them(temporal, tmp_path) -> None:
    data = tmp_path / "data"
    # Before the server connects: a PENDING and an IN_PROGRESS execution, both asked to cancel,
    # neither known to Temporal (the cancel requests never got there).
    async with serving(down_settings(), data) as stack:
        pending = stack.store.create_agent_execution(agent="echo", message="p")
        started = stack.store.create_agent_execution(agent="echo", message="s")
        stack.store.mark_agent_execution_started(started.id)
        for record in (pending, started):
            stack.store.request_cancel(AGENT_EXECUTION, record.id, by="ann", reason="r")
    async with serving(fast_settings(temporal.address), data, reconcile=True) as stack:
        await stack.connected()

        async def both_cancelled() -> bool:
            return all(stack.store.get_agent_execution(r.id).phase is Phase.CANCELLED for r in (pending, started))

        await eventually(both_cancelled, timeout=20, what="the reconciler cancelled both")
        client = await Client.connect(temporal.address)
        for record in (pending, started):
            with pytest.raises(Exception, match="not found"):
                await client.get_workflow_handle(record.workflow_id).describe(rpc_timeout=_td(CALL))


# ---------------------------------------------------------------------------------------- filters


async def test_list_filters_and_a_page_token_bound_to_them(temporal, tmp_path) -> None:
    async with serving(down_settings(), tmp_path / "data") as stack:
        alpha = [stack.store.create_agent_execution(agent="alpha", message=str(i)) for i in range(3)]
        beta = stack.store.create_agent_execution(agent="beta", message="b")
        page = await stack.agent_executions.List(
            AEX.ListAgentExecutionsRequest(agent="alpha", page_size=2), timeout=CALL
        )
        assert [e.id for e in page.executions] == [alpha[2].id, alpha[1].id] and page.next_page_token
        rest = await stack.agent_executions.List(
            AEX.ListAgentExecutionsRequest(agent="alpha", page_size=2, page_token=page.next_page_token), timeout=CALL
        )
        assert [e.id for e in rest.executions] == [alpha[0].id]
        error = await rpc_error(
            stack.agent_executions.List(
                AEX.ListAgentExecutionsRequest(agent="beta", page_token=page.next_page_token), timeout=CALL
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("page_token:")
        request = AEX.ListAgentExecutionsRequest()
        request.created_after.FromNanoseconds(int(alpha[2].created_at * 1e9))
        newer = await stack.agent_executions.List(request, timeout=CALL)
        assert [e.id for e in newer.executions] == [beta.id]
        error = await rpc_error(
            stack.agent_executions.List(AEX.ListAgentExecutionsRequest(parent_id="wf-nope"), timeout=CALL)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith("parent_id:")
