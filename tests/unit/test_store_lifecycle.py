"""The store's request ids, cancellation, deletion and list filters (schema version 2)."""

from __future__ import annotations

import time
import uuid

import pytest

from stigmer.errors import AlreadyExistsError, DatabaseError, FailedPreconditionError, NotFoundError
from stigmer.store import (
    AGENT_EXECUTION,
    WORKFLOW_EXECUTION,
    Phase,
    RequestKey,
    Store,
    TaskStatus,
    Workflow,
    body_digest,
)
from stigmer.store.table import TEMPORAL_CANCELLER


def key(body: object, *, id: str | None = None, ttl: float = 3600.0) -> RequestKey:
    return RequestKey(id or str(uuid.uuid4()), body_digest(body), ttl)


def workflow(store: Store, name: str = "flow") -> Workflow:
    return store.create_workflow(name=name, document='{"do": []}', valid=True)


def wex_with_steps(store: Store) -> tuple[str, str]:
    """A workflow execution at its second task (RUNNING, an agent step), the first COMPLETED."""
    wex = store.create_workflow_execution(
        workflow=workflow(store), input="{}", task_names_kinds=[("a", "set"), ("b", "agent"), ("c", "set")]
    )
    store.mark_workflow_execution_started(wex.id)
    store.set_task_status(wex.id, "a", TaskStatus.RUNNING)
    store.set_task_status(wex.id, "a", TaskStatus.COMPLETED)
    store.set_task_status(wex.id, "b", TaskStatus.RUNNING)
    step = store.create_agent_execution(agent="echo", message="m", parent_id=wex.id)
    store.mark_agent_execution_started(step.id)
    return wex.id, step.id


# -- request ids ----------------------------------------------------------------------------------


def test_same_request_id_and_body_returns_the_first_record(store: Store) -> None:
    k = key({"agent": "echo", "message": "hi"})
    first, created = store.admit_agent_execution(agent="echo", message="hi", request=k)
    again, created_again = store.admit_agent_execution(agent="echo", message="hi", request=k)
    assert (created, created_again) == (True, False)
    assert again == first
    assert first.request_id == k.id
    assert len(store.list_agent_executions()[0]) == 1


def test_same_request_id_other_body_is_already_exists_naming_the_first(store: Store) -> None:
    k = key({"message": "hi"})
    first, _ = store.admit_agent_execution(agent="echo", message="hi", request=k)
    other = RequestKey(k.id, body_digest({"message": "bye"}), k.ttl)
    with pytest.raises(AlreadyExistsError, match=first.id) as caught:
        store.admit_agent_execution(agent="echo", message="bye", request=other)
    assert k.id in str(caught.value)
    assert len(store.list_agent_executions()[0]) == 1


def test_an_expired_request_id_starts_something_new_and_the_old_record_lets_go(store: Store) -> None:
    k = key({"message": "hi"}, ttl=0.05)
    old, _ = store.admit_agent_execution(agent="echo", message="hi", request=k)
    deadline = time.monotonic() + 5
    while store.get_agent_execution(old.id).created_at >= time.time() - k.ttl:  # the ttl passes
        assert time.monotonic() < deadline
    new, created = store.admit_agent_execution(agent="echo", message="hi", request=k)
    assert created and new.id != old.id and new.request_id == k.id
    assert store.get_agent_execution(old.id).request_id == ""


def test_deleting_a_record_frees_its_request_id(store: Store) -> None:
    k = key({"message": "hi"})
    first, _ = store.admit_agent_execution(agent="echo", message="hi", request=k)
    store.cancel(AGENT_EXECUTION, first.id)
    store.delete_finished(AGENT_EXECUTION, first.id)
    second, created = store.admit_agent_execution(agent="echo", message="hi", request=k)
    assert created and second.id != first.id


def test_request_ids_of_the_two_kinds_and_workflows_are_separate(store: Store) -> None:
    shared = str(uuid.uuid4())
    aex, _ = store.admit_agent_execution(agent="e", message="m", request=key("a", id=shared))
    flow = store.create_workflow(name="f", document="{}", valid=True, request=key("doc", id=shared))
    assert store.create_workflow(name="f", document="{}", valid=True, request=key("doc", id=shared)) == flow
    wex, created = store.admit_workflow_execution(
        workflow=flow, input="", task_names_kinds=[], request=key("w", id=shared)
    )
    assert created and aex.request_id == wex.request_id == flow.request_id == shared


def test_a_unique_index_backs_the_request_id(store: Store) -> None:
    k = key("x")
    store.admit_agent_execution(agent="e", message="m", request=k)
    other = store.create_agent_execution(agent="e", message="n")
    with pytest.raises(DatabaseError, match=r"(?i)unique"), store._db.write("take a request id twice") as conn:
        conn.execute("UPDATE agent_executions SET request_id = ? WHERE id = ?", (k.id, other.id))


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_request_is_recorded_once_and_a_pending_one_is_cancelled_locally(store: Store) -> None:
    aex = store.create_agent_execution(agent="e", message="m")
    asked = store.request_cancel(AGENT_EXECUTION, aex.id, by="ann", reason="wrong agent", at=10.0)
    again = store.request_cancel(AGENT_EXECUTION, aex.id, by="bob", reason="", at=11.0)
    assert (again.cancelled_by, again.cancel_reason, again.cancel_requested_at) == ("ann", "wrong agent", 10.0)
    assert asked.phase is Phase.PENDING
    done = store.cancel(AGENT_EXECUTION, aex.id, pending_only=True)
    assert done.phase is Phase.CANCELLED
    assert done.error == "cancelled by ann: wrong agent"
    assert done.completed_at is not None and done.cancel_requested_at == 10.0


def test_pending_only_leaves_a_running_execution_to_its_workflow(store: Store) -> None:
    aex = store.create_agent_execution(agent="e", message="m")
    store.mark_agent_execution_started(aex.id)
    store.request_cancel(AGENT_EXECUTION, aex.id, by="ann", reason="")
    assert store.cancel(AGENT_EXECUTION, aex.id, pending_only=True).phase is Phase.IN_PROGRESS
    assert store.cancel(AGENT_EXECUTION, aex.id).phase is Phase.CANCELLED


@pytest.mark.parametrize("finish", ["complete", "fail", "cancel"])
def test_cancel_of_a_terminal_execution_is_failed_precondition_naming_the_phase(store: Store, finish: str) -> None:
    aex = store.create_agent_execution(agent="e", message="m")
    if finish == "complete":
        store.complete_agent_execution(aex.id, replies=[])
    elif finish == "fail":
        store.fail_agent_execution(aex.id, error="x")
    else:
        store.cancel(AGENT_EXECUTION, aex.id)
    phase = store.get_agent_execution(aex.id).phase
    with pytest.raises(FailedPreconditionError, match=f"already {phase.value}"):
        store.request_cancel(AGENT_EXECUTION, aex.id, by="ann", reason="")
    # and a cancel racing the end changes nothing
    assert store.cancel(AGENT_EXECUTION, aex.id).phase is phase


def test_withdraw_takes_back_only_the_request_it_made(store: Store) -> None:
    aex = store.create_agent_execution(agent="e", message="m")
    store.request_cancel(AGENT_EXECUTION, aex.id, by="ann", reason="r", at=5.0)
    assert not store.withdraw_cancel(AGENT_EXECUTION, aex.id, requested_at=6.0)
    assert store.withdraw_cancel(AGENT_EXECUTION, aex.id, requested_at=5.0)
    back = store.get_agent_execution(aex.id)
    assert (back.cancel_requested_at, back.cancelled_by, back.cancel_reason) == (None, "", "")


def test_cancel_without_a_request_is_temporals(store: Store) -> None:
    aex = store.create_agent_execution(agent="e", message="m")
    done = store.cancel(AGENT_EXECUTION, aex.id)
    assert done.cancelled_by == TEMPORAL_CANCELLER and "Temporal workflow was cancelled" in done.error


def test_cancelling_a_workflow_execution_stops_its_running_task_and_steps(store: Store) -> None:
    wex_id, step_id = wex_with_steps(store)
    heard: list[tuple[str, str]] = []
    store.add_listener(lambda kind, id: heard.append((kind, id)))
    store.request_cancel(WORKFLOW_EXECUTION, wex_id, by="ann", reason="enough")
    done = store.cancel(WORKFLOW_EXECUTION, wex_id)
    assert done.phase is Phase.CANCELLED
    assert [t.status for t in done.tasks] == [TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.SKIPPED]
    step = store.get_agent_execution(step_id)
    assert step.phase is Phase.CANCELLED
    assert (step.cancelled_by, step.cancel_reason) == ("ann", "enough")
    assert wex_id in step.error
    assert (AGENT_EXECUTION, step_id) in heard and (WORKFLOW_EXECUTION, wex_id) in heard
    # a late task update of the cancelled execution changes nothing
    assert store.set_task_status(wex_id, "c", TaskStatus.RUNNING).tasks == done.tasks


def test_a_step_cancelled_after_its_parent_asked_names_the_parents_request(store: Store) -> None:
    wex_id, step_id = wex_with_steps(store)
    store.request_cancel(WORKFLOW_EXECUTION, wex_id, by="ann", reason="why")
    step = store.cancel(AGENT_EXECUTION, step_id)  # its child workflow records it first
    assert (step.cancelled_by, step.cancel_reason) == ("ann", "why")


# -- delete ---------------------------------------------------------------------------------------


def test_delete_refuses_an_unfinished_execution_naming_its_phase(store: Store) -> None:
    aex = store.create_agent_execution(agent="e", message="m")
    with pytest.raises(FailedPreconditionError, match="is PENDING"):
        store.delete_finished(AGENT_EXECUTION, aex.id)
    assert store.get_agent_execution(aex.id).phase is Phase.PENDING


def test_delete_returns_the_record_and_twice_is_not_found(store: Store) -> None:
    aex = store.create_agent_execution(agent="e", message="m")
    done = store.complete_agent_execution(aex.id, replies=[])
    heard: list[str] = []
    store.add_listener(lambda kind, id: heard.append(id))
    assert store.delete_finished(AGENT_EXECUTION, aex.id) == done
    assert heard == [aex.id]
    with pytest.raises(NotFoundError):
        store.delete_finished(AGENT_EXECUTION, aex.id)
    with pytest.raises(NotFoundError):
        store.get_agent_execution(aex.id)


def test_deleting_a_workflow_execution_takes_its_finished_steps(store: Store) -> None:
    wex_id, step_id = wex_with_steps(store)
    other = store.create_agent_execution(agent="e", message="m")
    store.cancel(WORKFLOW_EXECUTION, wex_id)
    store.delete_finished(WORKFLOW_EXECUTION, wex_id)
    with pytest.raises(NotFoundError):
        store.get_agent_execution(step_id)
    assert store.get_agent_execution(other.id).phase is Phase.PENDING


def test_delete_workflow_is_refused_while_executions_run_and_frees_the_name(store: Store) -> None:
    flow = workflow(store)
    wex = store.create_workflow_execution(workflow=flow, input="", task_names_kinds=[])
    with pytest.raises(FailedPreconditionError, match=f"1 unfinished execution .oldest {wex.id}"):
        store.delete_workflow("flow")
    store.complete_workflow_execution(wex.id, output="")
    assert store.delete_workflow("flow") == flow
    with pytest.raises(NotFoundError):
        store.delete_workflow(flow.id)
    assert workflow(store).id != flow.id  # the name is free again
    assert store.get_workflow_execution(wex.id).workflow_name == "flow"  # finished ones stay


# -- list filters ---------------------------------------------------------------------------------


def test_agent_execution_filters_combine(store: Store) -> None:
    a1 = store.create_agent_execution(agent="alpha", message="1")
    cut = store.get_agent_execution(a1.id).created_at
    deadline = time.monotonic() + 5
    while time.time() <= cut:  # the next record is strictly newer
        assert time.monotonic() < deadline
    b = store.create_agent_execution(agent="beta", message="2")
    a2 = store.create_agent_execution(agent="alpha", message="3")
    store.complete_agent_execution(a2.id, replies=[])

    def ids(**filters: object) -> list[str]:
        return [r.id for r in store.list_agent_executions(**filters)[0]]  # type: ignore[arg-type]

    assert ids(agent="alpha") == [a2.id, a1.id]
    assert ids(agent="alpha", phase=Phase.COMPLETED) == [a2.id]
    assert ids(created_after=cut) == [a2.id, b.id]
    assert ids(agent="gamma") == []


def test_workflow_execution_filter_by_id_or_name(store: Store) -> None:
    one, two = workflow(store, "one"), workflow(store, "two")
    w1 = store.create_workflow_execution(workflow=one, input="", task_names_kinds=[])
    store.create_workflow_execution(workflow=two, input="", task_names_kinds=[])
    assert [r.id for r in store.list_workflow_executions(workflow="one")[0]] == [w1.id]
    assert [r.id for r in store.list_workflow_executions(workflow=one.id)[0]] == [w1.id]


def test_a_page_token_only_continues_the_listing_it_came_from(store: Store) -> None:
    for _ in range(3):
        store.create_agent_execution(agent="alpha", message="m")
    page, token = store.list_agent_executions(agent="alpha", page_size=2)
    assert len(page) == 2 and token
    rest, end = store.list_agent_executions(agent="alpha", page_size=2, page_token=token)
    assert len(rest) == 1 and end == ""
    with pytest.raises(ValueError, match="other filters"):
        store.list_agent_executions(agent="beta", page_size=2, page_token=token)
    with pytest.raises(ValueError, match="other filters"):
        store.list_agent_executions(page_size=2, page_token=token)


def test_paging_with_a_filter_is_stable_under_inserts(store: Store) -> None:
    made = [store.create_agent_execution(agent="alpha", message=str(i)).id for i in range(5)]
    seen: list[str] = []
    page, token = store.list_agent_executions(agent="alpha", page_size=2)
    seen += [r.id for r in page]
    while token:
        store.create_agent_execution(agent="alpha", message="new")  # newer: never in a later page
        page, token = store.list_agent_executions(agent="alpha", page_size=2, page_token=token)
        seen += [r.id for r in page]
    assert seen == list(reversed(made))
