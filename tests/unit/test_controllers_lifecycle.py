"""Controllers: retried creates (request ids), cancel and delete, against a real store and fake Temporal.

The races the integration tests cannot time: a retry arriving while the first attempt's start is
in flight, a cancel or delete of a record that is still being created, Temporal failing the cancel.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stigmer.controllers import AgentExecutionController
from stigmer.errors import InvalidArgumentError, NotFoundError, TemporalUnavailableError
from stigmer.store import AGENT_EXECUTION, Phase, Store
from stigmer.testing.eventually import eventually
from tests.unit.test_controllers import FakeAvailability


class GatedCreator:
    """start waits for `gate` (when given) and may fail; cancel answers `running` or raises."""

    def __init__(self) -> None:
        self.client = object()
        self.starts: list[str] = []
        self.cancels: list[str] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.start_error: BaseException | None = None
        self.running = True
        self.cancel_error: BaseException | None = None

    async def start(self, execution_id: str, *, timeout: float) -> str:  # noqa: ASYNC109
        self.starts.append(execution_id)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.start_error is not None:
            raise self.start_error
        return f"wf/{execution_id}"

    async def cancel(self, execution_id: str, *, timeout: float) -> bool:  # noqa: ASYNC109
        self.cancels.append(execution_id)
        if self.cancel_error is not None:
            raise self.cancel_error
        return self.running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


def controller(store: Store, creator: GatedCreator | None) -> AgentExecutionController:
    made = AgentExecutionController(store=store, availability=FakeAvailability(), start_timeout=1.0)
    made.set_creator(creator)  # type: ignore[arg-type]
    return made


async def test_a_retry_during_the_first_start_waits_for_it_one_record_one_start(store: Store) -> None:
    creator = GatedCreator()
    creator.gate = asyncio.Event()
    aex = controller(store, creator)
    request_id = str(uuid.uuid4())
    first = asyncio.create_task(aex.create(agent="echo", message="m", request_id=request_id))
    await creator.started.wait()
    second = asyncio.create_task(aex.create(agent="echo", message="m", request_id=request_id))
    await asyncio.sleep(0)  # let the retry reach its wait (a scheduling step, not a timing wait)
    assert not second.done()
    creator.gate.set()
    a, b = await asyncio.gather(first, second)
    assert a.id == b.id and creator.starts == [a.id]
    assert len(store.list_agent_executions()[0]) == 1


async def test_a_retry_during_a_failing_start_gets_the_same_error_and_nothing_stays(store: Store) -> None:
    creator = GatedCreator()
    creator.gate = asyncio.Event()
    creator.start_error = TemporalUnavailableError("start: Temporal did not answer")
    aex = controller(store, creator)
    request_id = str(uuid.uuid4())
    first = asyncio.create_task(aex.create(agent="echo", message="m", request_id=request_id))
    await creator.started.wait()
    second = asyncio.create_task(aex.create(agent="echo", message="m", request_id=request_id))
    await asyncio.sleep(0)
    creator.gate.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, TemporalUnavailableError) for r in results), results
    assert store.list_agent_executions()[0] == []
    # ... and a later retry creates it afresh.
    creator.start_error = None
    again = await aex.create(agent="echo", message="m", request_id=request_id)
    assert store.get_agent_execution(again.id).request_id == request_id


async def test_a_retry_after_a_lost_reply_starts_again_only_what_this_process_did_not_start(
    store: Store,
) -> None:
    creator = GatedCreator()
    aex = controller(store, creator)
    request_id = str(uuid.uuid4())
    first = await aex.create(agent="echo", message="m", request_id=request_id)
    again = await aex.create(agent="echo", message="m", request_id=request_id)
    assert again.id == first.id and creator.starts == [first.id]  # started here: just answered
    # Another process (or this one before a restart) stored it: a PENDING record is started again.
    restarted = controller(store, creator)
    await restarted.create(agent="echo", message="m", request_id=request_id)
    assert creator.starts == [first.id, first.id]
    store.mark_agent_execution_started(first.id)
    await controller(store, creator).create(agent="echo", message="m", request_id=request_id)
    assert len(creator.starts) == 2  # IN_PROGRESS: just answered


async def test_a_malformed_request_id_names_the_field(store: Store) -> None:
    aex = controller(store, GatedCreator())
    with pytest.raises(InvalidArgumentError) as caught:
        await aex.create(agent="echo", message="m", request_id="123")
    assert caught.value.field == "request_id"


async def test_cancel_of_an_execution_mid_create_waits_for_the_create(store: Store) -> None:
    creator = GatedCreator()
    creator.gate = asyncio.Event()
    aex = controller(store, creator)
    create = asyncio.create_task(aex.create(agent="echo", message="m"))
    await creator.started.wait()
    (record,) = store.list_agent_executions()[0]
    cancel = asyncio.create_task(aex.cancel(record.id, requested_by="ann"))
    await asyncio.sleep(0)
    assert not cancel.done()
    creator.gate.set()
    created, cancelled = await asyncio.gather(create, cancel)
    assert created.id == cancelled.id and cancelled.phase is Phase.CANCELLED  # PENDING: cancelled locally
    assert creator.cancels == []


async def test_cancel_of_a_create_that_fails_is_not_found(store: Store) -> None:
    creator = GatedCreator()
    creator.gate = asyncio.Event()
    creator.start_error = TemporalUnavailableError("no answer")
    aex = controller(store, creator)
    create = asyncio.create_task(aex.create(agent="echo", message="m"))
    await creator.started.wait()
    (record,) = store.list_agent_executions()[0]
    cancel = asyncio.create_task(aex.cancel(record.id))
    await asyncio.sleep(0)
    creator.gate.set()
    results = await asyncio.gather(create, cancel, return_exceptions=True)
    assert isinstance(results[0], TemporalUnavailableError) and isinstance(results[1], NotFoundError)


async def test_cancel_of_a_running_execution_asks_temporal_and_records_the_request(store: Store) -> None:
    creator = GatedCreator()
    aex = controller(store, creator)
    record = store.create_agent_execution(agent="echo", message="m")
    store.mark_agent_execution_started(record.id)
    asked = await aex.cancel(record.id, reason="why", requested_by="ann")
    assert creator.cancels == [record.id]
    assert asked.phase is Phase.IN_PROGRESS and (asked.cancelled_by, asked.cancel_reason) == ("ann", "why")


async def test_cancel_when_temporal_has_no_workflow_cancels_locally(store: Store) -> None:
    creator = GatedCreator()
    creator.running = False
    record = store.create_agent_execution(agent="echo", message="m")
    store.mark_agent_execution_started(record.id)
    done = await controller(store, creator).cancel(record.id)
    assert done.phase is Phase.CANCELLED and done.cancelled_by == "anonymous"


async def test_cancel_without_a_connection_is_unavailable_and_changes_nothing(store: Store) -> None:
    record = store.create_agent_execution(agent="echo", message="m")
    store.mark_agent_execution_started(record.id)
    with pytest.raises(TemporalUnavailableError):
        await controller(store, None).cancel(record.id, requested_by="ann")
    after = store.get_agent_execution(record.id)
    assert after.phase is Phase.IN_PROGRESS and after.cancel_requested_at is None


async def test_a_cancel_that_may_have_reached_temporal_is_kept_for_the_reconciler(store: Store) -> None:
    creator = GatedCreator()
    creator.cancel_error = TemporalUnavailableError("cancel: no answer in time")
    record = store.create_agent_execution(agent="echo", message="m")
    store.mark_agent_execution_started(record.id)
    with pytest.raises(TemporalUnavailableError):
        await controller(store, creator).cancel(record.id, reason="why", requested_by="ann")
    after = store.get_agent_execution(record.id)
    assert after.phase is Phase.IN_PROGRESS and (after.cancelled_by, after.cancel_reason) == ("ann", "why")


async def test_delete_with_force_cancels_waits_and_deletes(store: Store) -> None:
    creator = GatedCreator()
    aex = controller(store, creator)
    record = store.create_agent_execution(agent="echo", message="m")
    store.mark_agent_execution_started(record.id)

    async def workflow_records_the_cancel() -> None:  # the fake Temporal reacts to the cancel request
        await eventually(lambda: bool(creator.cancels), timeout=5, what="a cancel request")
        store.cancel(AGENT_EXECUTION, record.id)

    worker = asyncio.create_task(workflow_records_the_cancel())
    deleted = await asyncio.wait_for(aex.delete(record.id, force=True), timeout=10)
    await worker
    assert deleted.phase is Phase.CANCELLED and deleted.cancel_reason == "deleted with force"
    with pytest.raises(NotFoundError):
        aex.get(record.id)


async def test_a_retry_answered_by_another_server_keeps_the_record_when_the_first_start_fails(
    store: Store,
) -> None:
    """Server A stores the record and its start hangs; the client's retry reaches server B, which
    starts and answers it; then A's start fails. A must not remove what B acknowledged."""
    first, second = GatedCreator(), GatedCreator()
    first.gate = asyncio.Event()
    first.start_error = TemporalUnavailableError("start: no answer")
    server_a, server_b = controller(store, first), controller(store, second)
    request_id = str(uuid.uuid4())
    hanging = asyncio.create_task(server_a.create(agent="echo", message="m", request_id=request_id))
    await first.started.wait()
    answered = await server_b.create(agent="echo", message="m", request_id=request_id)
    first.gate.set()
    with pytest.raises(TemporalUnavailableError):
        await hanging
    assert store.get_agent_execution(answered.id).phase is Phase.PENDING  # kept: B acknowledged it
    assert second.starts == [answered.id]


async def test_a_retry_after_the_first_attempt_removed_its_record_creates_it_afresh(store: Store) -> None:
    creator = GatedCreator()
    aex = controller(store, creator)
    request_id = str(uuid.uuid4())
    creator.start_error = TemporalUnavailableError("no answer")
    with pytest.raises(TemporalUnavailableError):
        await aex.create(agent="echo", message="m", request_id=request_id)
    assert store.list_agent_executions()[0] == []
    creator.start_error = None
    again = await controller(store, creator).create(agent="echo", message="m", request_id=request_id)
    assert store.get_agent_execution(again.id).request_id == request_id
