"""Hostile input for what issue 14 added, property-based: Cancel and Delete of both execution kinds,
WorkflowService.Delete, request ids on Create, and the List filters (agent, parent_id, workflow,
created_after), through a real grpc.aio channel to the real stack (harness.py), as in
test_api_fuzz.py.

The properties: never INTERNAL or UNKNOWN; INVALID_ARGUMENT names the field; NOT_FOUND says so;
what a Cancel accepts (reason, requested_by) is recorded byte for byte and the first request is
kept; a Cancel refused for its input changes nothing; a Delete removes only a finished execution
(FAILED_PRECONDITION otherwise, unless forced), and a second one is NOT_FOUND; a retried Create
with a request_id returns its first record, another body is ALREADY_EXISTS naming it (the model
of harness.RequestIds); a List returns only what its filters select, and a page token works
only with the filters it was issued for. Bounded and derandomized like test_api_fuzz.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from stigmer.api import agent_execution_pb2 as aex
from stigmer.api import common_pb2
from stigmer.api import workflow_execution_pb2 as wex
from stigmer.api import workflow_pb2 as wf
from stigmer.temporal.agents import DELAY_ENV
from stigmer.testing.eventually import wait_until
from tests.fuzz import strategies as s
from tests.fuzz.harness import Api, RequestIds, fuzz, healthy, newest

pytestmark = [pytest.mark.fuzz, pytest.mark.temporal, pytest.mark.timeout(240)]

Code = grpc.StatusCode
UNFINISHED = (common_pb2.PENDING, common_pb2.IN_PROGRESS)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SETTLE = 60.0


def reason_ok(reason: str) -> bool:
    """What a Cancel must accept as its reason: at most 1024 bytes, no control character but newline and tab."""
    return len(reason.encode()) <= s.MAX_REASON_BYTES and not _CONTROL.search(
        reason.replace("\n", "").replace("\t", "")
    )


def requester_ok(requested_by: str) -> bool:
    """... and as requested_by: at most 256 bytes, no control character once trimmed."""
    return len(requested_by.encode()) <= s.MAX_REQUESTED_BY_BYTES and not _CONTROL.search(requested_by.strip())


def timestamp(seconds_nanos: tuple[int, int]) -> Timestamp:
    seconds, nanos = seconds_nanos
    return Timestamp(seconds=seconds, nanos=nanos)


# ---------------------------------------------------------------------------------------- hostile ids


def test_cancels_and_deletes_of_hostile_ids(api: Api) -> None:
    @fuzz(120)
    @given(st.sampled_from(["aex", "wex"]), st.data(), s.reasons, s.requesters, s.forces)
    def case(kind: str, data: st.DataObject, reason: str, requested_by: str, force: bool) -> None:
        id = data.draw(s.ids(kind))
        if kind == "aex":
            cancel = api.unary(
                lambda x: x.agent_executions.Cancel,
                aex.CancelAgentExecutionRequest(id=id, reason=reason, requested_by=requested_by),
            )
            delete = api.unary(lambda x: x.agent_executions.Delete, aex.DeleteAgentExecutionRequest(id=id, force=force))
        else:
            cancel = api.unary(
                lambda x: x.workflow_executions.Cancel,
                wex.CancelWorkflowExecutionRequest(id=id, reason=reason, requested_by=requested_by),
            )
            delete = api.unary(
                lambda x: x.workflow_executions.Delete, wex.DeleteWorkflowExecutionRequest(id=id, force=force)
            )
        for outcome, fields in ((cancel, ("id: ", "reason: ", "requested_by: ")), (delete, ("id: ",))):
            outcome.expect(Code.INVALID_ARGUMENT, Code.NOT_FOUND)
            assert outcome.error is not None, f"{id!r} was found"
            if outcome.code is Code.INVALID_ARGUMENT:
                assert outcome.details.startswith(fields), outcome.details
            else:
                assert outcome.details.endswith(" not found"), outcome.details
        if cancel.code is Code.INVALID_ARGUMENT and cancel.details.startswith("reason: "):
            assert not reason_ok(reason), f"a valid reason was refused: {cancel.details}"
        if cancel.code is Code.INVALID_ARGUMENT and cancel.details.startswith("requested_by: "):
            assert not requester_ok(requested_by), f"a valid requested_by was refused: {cancel.details}"

    case()
    assert healthy(api)


def test_workflow_deletes_of_hostile_names(api: Api) -> None:
    @fuzz(80)
    @given(s.weighted((2, s.ids("wf")), (2, s.wild_text), (1, s.big_text(256)), (1, s.big_text(s.MIB))))
    def case(id_or_name: str) -> None:
        outcome = api.unary(lambda x: x.workflows.Delete, wf.DeleteWorkflowRequest(id_or_name=id_or_name))
        outcome.expect(Code.INVALID_ARGUMENT, Code.NOT_FOUND)
        assert outcome.error is not None, f"{id_or_name!r} was found"
        if outcome.code is Code.INVALID_ARGUMENT:
            assert outcome.details.startswith("id_or_name: "), outcome.details
        else:
            assert outcome.details.endswith(" not found"), outcome.details

    case()


# ---------------------------------------------------------------------------------------- real executions


SLOW_WORKFLOW = {"tasks": [
    {"name": "nap", "kind": "wait", "seconds": 120},
    {"name": "ask", "kind": "agent", "agent": "echo", "message": "hi ${input.user}"},
]}  # fmt: skip


@pytest.fixture(scope="module")
def slow_workflow(api: Api) -> wf.Workflow:
    """A workflow whose executions wait two minutes before their agent step: running until cancelled."""
    document = json.dumps({"name": f"slow-{uuid.uuid4().hex[:8]}", **SLOW_WORKFLOW})
    made = api.via_temporal(lambda x: x.workflows.Create, wf.CreateWorkflowRequest(document=document)).ok().reply
    assert made.validation.valid, made.validation.errors
    return made


@dataclass
class Kind:
    """One execution kind's calls."""

    name: str  # "aex" or "wex"
    api: Api
    workflow: str = ""  # for "wex": the slow workflow's name

    def create_running(self, request_id: str = "") -> Any:
        """An execution that runs (or waits to run) until it is cancelled."""
        if self.name == "aex":
            request: Any = aex.CreateAgentExecutionRequest(
                agent="echo", message="take your time", runtime_env={DELAY_ENV: "120"}, request_id=request_id
            )
            return self.api.via_temporal(lambda x: x.agent_executions.Create, request).ok().reply
        request = wex.CreateWorkflowExecutionRequest(workflow=self.workflow, input='{"user": "ada"}')
        return self.api.via_temporal(lambda x: x.workflow_executions.Create, request).ok().reply

    def cancel(self, id: str, reason: str, requested_by: str) -> Any:
        if self.name == "aex":
            request: Any = aex.CancelAgentExecutionRequest(id=id, reason=reason, requested_by=requested_by)
            return self.api.via_temporal(lambda x: x.agent_executions.Cancel, request)
        request = wex.CancelWorkflowExecutionRequest(id=id, reason=reason, requested_by=requested_by)
        return self.api.via_temporal(lambda x: x.workflow_executions.Cancel, request)

    def delete(self, id: str, *, force: bool) -> Any:
        if self.name == "aex":
            request: Any = aex.DeleteAgentExecutionRequest(id=id, force=force)
            return self.api.via_temporal(lambda x: x.agent_executions.Delete, request)
        request = wex.DeleteWorkflowExecutionRequest(id=id, force=force)
        return self.api.via_temporal(lambda x: x.workflow_executions.Delete, request)

    def get(self, id: str) -> Any:
        if self.name == "aex":
            return self.api.unary(lambda x: x.agent_executions.Get, aex.GetAgentExecutionRequest(id=id))
        return self.api.unary(lambda x: x.workflow_executions.Get, wex.GetWorkflowExecutionRequest(id=id))


@pytest.fixture(scope="module")
def kinds(api: Api, slow_workflow: wf.Workflow) -> dict[str, Kind]:
    return {"aex": Kind("aex", api), "wex": Kind("wex", api, workflow=slow_workflow.name)}


def finished(kind: Kind, id: str) -> Any:
    """The record once it is terminal; False (not yet) before."""
    record = kind.get(id).ok().reply
    return record if record.phase not in UNFINISHED else False


def test_cancel_records_who_and_why_and_delete_removes_only_what_has_finished(api: Api, kinds: dict[str, Kind]) -> None:
    cancelled: dict[str, tuple[Kind, str, str]] = {}  # id -> (kind, the reason and requester recorded)
    running: dict[str, Kind] = {}  # refused cancels: still running

    @fuzz(24)
    @given(st.sampled_from(["aex", "wex"]), s.reasons, s.requesters, s.reasons, s.requesters)
    def case(kind_name: str, reason: str, requested_by: str, reason2: str, requested_by2: str) -> None:
        kind = kinds[kind_name]
        record = kind.create_running()
        # Unfinished: a Delete without force is refused, naming the phase, and changes nothing.
        refused = kind.delete(record.id, force=False).expect(Code.FAILED_PRECONDITION)
        assert refused.error is not None and ("PENDING" in refused.details or "IN_PROGRESS" in refused.details)
        outcome = kind.cancel(record.id, reason, requested_by).expect(Code.INVALID_ARGUMENT)
        if outcome.error is not None:
            assert outcome.details.startswith(("reason: ", "requested_by: ")), outcome.details
            assert not (reason_ok(reason) and requester_ok(requested_by)), f"valid input refused: {outcome.details}"
            now = kind.get(record.id).ok().reply
            assert now.phase in UNFINISHED and not now.HasField("cancel_requested_at"), now
            running[record.id] = kind
            return
        assert reason_ok(reason) and requester_ok(requested_by), f"accepted {reason[:80]!r} / {requested_by[:80]!r}"
        reply = outcome.reply
        expected_by = requested_by.strip() or "anonymous"
        assert reply.HasField("cancel_requested_at")
        assert (reply.cancel_reason.encode(), reply.cancelled_by.encode()) == (reason.encode(), expected_by.encode())
        # Repeating it is harmless, and the first request is the one kept.
        again = kind.cancel(record.id, reason2, requested_by2).expect(Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION)
        if again.code is Code.FAILED_PRECONDITION:
            assert "CANCELLED" in again.details, again.details
        elif again.error is None:
            assert (again.reply.cancel_reason, again.reply.cancelled_by) == (reason, expected_by)
        cancelled[record.id] = (kind, reason, expected_by)

    case()
    assert len(cancelled) >= 5 and running, (len(cancelled), len(running))
    # What was never cancelled goes with Delete(force): it cancels, waits, deletes, and answers CANCELLED.
    for id, kind in running.items():
        gone = kind.delete(id, force=True).ok().reply
        assert gone.phase == common_pb2.CANCELLED and gone.cancelled_by == "anonymous", gone
        assert gone.cancel_reason == "deleted with force", gone
    for id, (kind, reason, by) in cancelled.items():
        record = wait_until(lambda kind=kind, id=id: finished(kind, id), timeout=SETTLE, what=f"{id} CANCELLED")  # type: ignore[misc]
        assert record.phase == common_pb2.CANCELLED, record
        assert (record.cancel_reason, record.cancelled_by) == (reason, by), record
        if kind.name == "aex":  # the agent never answered
            assert [m.role for m in record.messages] == ["user"], record.messages
        else:  # the wait was cut short (or never began), the agent step never reached
            nap, ask = (t.status for t in record.tasks)
            assert nap in (wex.TaskState.CANCELLED, wex.TaskState.SKIPPED), record.tasks
            assert ask == wex.TaskState.SKIPPED, record.tasks
    for id, kind in [*running.items(), *((id, k) for id, (k, _, _) in cancelled.items())]:
        if id not in running:
            assert kind.delete(id, force=False).ok().reply.phase == common_pb2.CANCELLED
        for outcome in (kind.delete(id, force=False), kind.delete(id, force=True), kind.cancel(id, "", ""),
                        kind.get(id)):  # fmt: skip
            outcome.expect(Code.NOT_FOUND)
            assert outcome.code is Code.NOT_FOUND, (id, outcome.code)
    assert healthy(api)


def test_workflow_delete_frees_the_name_and_waits_for_executions(api: Api, kinds: dict[str, Kind]) -> None:
    suffix = uuid.uuid4().hex[:6]

    @fuzz(12)
    @given(st.integers(0, 10**6), st.booleans(), st.booleans())
    def case(n: int, by_name: bool, with_execution: bool) -> None:
        name = f"doomed-{suffix}-{n}"
        document = json.dumps({"name": name, **SLOW_WORKFLOW})
        made = api.via_temporal(lambda x: x.workflows.Create, wf.CreateWorkflowRequest(document=document))
        made.expect(Code.ALREADY_EXISTS)
        if made.error is not None:  # drawn twice: it is still there
            return
        ref = name if by_name else made.reply.id
        if with_execution:
            doomed = Kind("wex", api, workflow=name).create_running()
            busy = api.unary(lambda x: x.workflows.Delete, wf.DeleteWorkflowRequest(id_or_name=ref))
            busy.expect(Code.FAILED_PRECONDITION)
            assert busy.error is not None and doomed.id in busy.details, busy.details
            kinds["wex"].delete(doomed.id, force=True).ok()
        gone = api.unary(lambda x: x.workflows.Delete, wf.DeleteWorkflowRequest(id_or_name=ref)).ok().reply
        assert (gone.id, gone.name, gone.document) == (made.reply.id, name, document)
        again = api.unary(lambda x: x.workflows.Delete, wf.DeleteWorkflowRequest(id_or_name=ref))
        got = api.unary(lambda x: x.workflows.Get, wf.GetWorkflowRequest(id_or_name=ref))
        assert (again.code, got.code) == (Code.NOT_FOUND, Code.NOT_FOUND), (again.details, got.details)
        # The name is free again.
        api.via_temporal(lambda x: x.workflows.Create, wf.CreateWorkflowRequest(document=document)).ok()

    case()


# ---------------------------------------------------------------------------------------- request ids


def test_creates_with_request_ids_used_again_and_again(api: Api, request_ids: dict[str, RequestIds]) -> None:
    model = request_ids["aex"]
    bodies = [("echo", "first body", {}), ("echo", "second body", {}), ("other", "first body", {"K": "v"})]

    @fuzz(60)
    @given(s.weighted((3, s.pooled_request_ids), (1, s.request_ids)), st.sampled_from(range(len(bodies))))
    def case(request_id: str, which: int) -> None:
        agent, message, env = bodies[which]
        before = newest(api, "aex")
        request = aex.CreateAgentExecutionRequest(agent=agent, message=message, runtime_env=env, request_id=request_id)
        outcome = api.via_temporal(lambda x: x.agent_executions.Create, request)
        outcome.expect(Code.INVALID_ARGUMENT, Code.ALREADY_EXISTS)
        made = model.judge(request_id, (agent, message, tuple(sorted(env.items()))), outcome)
        if made == "new":
            assert newest(api, "aex") == outcome.reply.id
        else:
            assert newest(api, "aex") == before, f"{made}, yet a record was made"
        if outcome.code is Code.INVALID_ARGUMENT:
            assert outcome.details.startswith("request_id: "), outcome.details

    case()
    assert len(model.seen) >= 3, model.seen  # the pool's valid ids (two spell the same one)
    assert healthy(api)


# ---------------------------------------------------------------------------------------- list filters


@pytest.fixture(scope="module")
def listed(api: Api, kinds: dict[str, Kind]) -> Iterator[None]:
    """Something for the filters to select: agent executions of two agents, a workflow execution
    with a step (so parent_id selects it), finished."""
    for agent in ("alpha", "beta", "alpha", "alpha"):
        api.via_temporal(
            lambda x, agent=agent: x.agent_executions.Create,  # type: ignore[misc]
            aex.CreateAgentExecutionRequest(agent=agent, message="listed"),
        ).ok()
    document = json.dumps({"name": f"quick-{uuid.uuid4().hex[:6]}", "tasks": [
        {"name": "ask", "kind": "agent", "agent": "alpha", "message": "hi"}]})  # fmt: skip
    quick = api.via_temporal(lambda x: x.workflows.Create, wf.CreateWorkflowRequest(document=document)).ok().reply
    run = api.via_temporal(lambda x: x.workflow_executions.Create, wex.CreateWorkflowExecutionRequest(
        workflow=quick.name, input="{}")).ok().reply  # fmt: skip
    wait_until(lambda: kinds["wex"].get(run.id).ok().reply.phase == common_pb2.COMPLETED, timeout=SETTLE, what="listed")
    yield None


def _seconds(stamp: Any) -> float:
    return float(stamp.seconds + stamp.nanos / 1_000_000_000)


def test_lists_with_hostile_new_filters(api: Api, listed: None) -> None:
    parents = [e.id for e in api.stack.store.list_workflow_executions(page_size=50)[0]]
    workflow_refs = [r for e in api.stack.store.list_workflow_executions(page_size=50)[0]
                     for r in (e.workflow_id, e.workflow_name)]  # fmt: skip
    agents = s.weighted((3, st.just("")), (3, st.sampled_from(["alpha", "beta", "echo"])), (2, s.wild_text),
                        (1, s.big_text(256)))  # fmt: skip
    parent_ids = s.weighted((3, st.just("")), (2, st.sampled_from(parents)), (2, s.ids("wex")))
    workflows = s.weighted((3, st.just("")), (2, st.sampled_from(workflow_refs)), (2, s.wild_text),
                           (1, s.big_text(256)))  # fmt: skip

    def list_agents(**fields: Any) -> Any:
        after = fields.pop("created_after", None)
        request = aex.ListAgentExecutionsRequest(**fields)
        if after is not None:
            request.created_after.CopyFrom(timestamp(after))
        return api.unary(lambda x: x.agent_executions.List, request)

    def list_workflow_executions(**fields: Any) -> Any:
        after = fields.pop("created_after", None)
        request = wex.ListWorkflowExecutionsRequest(**fields)
        if after is not None:
            request.created_after.CopyFrom(timestamp(after))
        return api.unary(lambda x: x.workflow_executions.List, request)

    # A token of a first page: of the alpha agent's executions (one per page), and of all workflow executions.
    alpha = list_agents(agent="alpha", page_size=1).ok().reply
    assert alpha.next_page_token, "the fixture made several alpha executions"
    following = list_agents(agent="alpha", page_size=1, page_token=alpha.next_page_token).ok().reply
    assert [e.agent for e in following.executions] == ["alpha"] and following.executions[0].id < alpha.executions[0].id

    @fuzz(150)
    @given(st.sampled_from(["aex", "wex"]), s.phases, agents, parent_ids, workflows, s.created_afters,
           st.sampled_from([0, 1, 3]), st.booleans())  # fmt: skip
    def case(
        kind: str, phase: int, agent: str, parent_id: str, workflow: str,
        created_after: tuple[int, int] | None, page_size: int, with_token: bool,
    ) -> None:  # fmt: skip
        token = alpha.next_page_token if with_token else ""
        if kind == "aex":
            fields: dict[str, Any] = {"agent": agent, "parent_id": parent_id}
            outcome = list_agents(phase=phase, created_after=created_after, page_size=page_size, page_token=token,
                                  **fields)  # fmt: skip
            names = ("phase: ", "agent: ", "parent_id: ", "created_after: ", "page_token: ")
        else:
            fields = {"workflow": workflow}
            outcome = list_workflow_executions(phase=phase, created_after=created_after, page_size=page_size,
                                               page_token=token, **fields)  # fmt: skip
            names = ("phase: ", "workflow: ", "created_after: ", "page_token: ")
        outcome.expect(Code.INVALID_ARGUMENT)
        if outcome.error is not None:
            assert outcome.details.startswith(names), outcome.details
            tame = phase in common_pb2.ExecutionPhase.values() and not token and len(agent.encode()) <= 256
            tame = tame and (parent_id == "" or parent_id in parents) and len(workflow.encode()) <= 256
            tame = tame and (created_after is None or s.valid_timestamp(*created_after))
            assert not tame, f"a valid listing was refused: {outcome.details}"
            return
        # A timestamp outside google.protobuf.Timestamp's range is refused, naming the field.
        assert created_after is None or s.valid_timestamp(*created_after), "an invalid created_after was accepted"
        # The token is bound to the listing it came from: with other filters it is refused.
        if token:
            assert kind == "aex" and (phase, agent, parent_id, created_after) == (0, "alpha", "", None), (
                "a page token was accepted with other filters"
            )
        for item in outcome.reply.executions:
            assert phase == 0 or item.phase == phase
            assert created_after is None or _seconds(item.created_at) > created_after[0] + created_after[1] / 1e9
            if kind == "aex":
                assert agent == "" or item.agent == agent
                assert parent_id == "" or item.parent_id == parent_id
            else:
                assert workflow == "" or workflow in (item.workflow_id, item.workflow_name)

    case()
    assert healthy(api)
