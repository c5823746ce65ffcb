"""Controllers against a real store on tmp_path, with a fake creator, validator and Availability.

What matters most: no creator -> TemporalUnavailableError with nothing persisted; a failed start removes the
record before the error reaches the caller; bad input -> InvalidArgumentError naming the field;
text comes back byte for byte; Watch follows a record to its terminal phase and unsubscribes.
The reconciler's decision table runs against a fake client here; tests/integration has the
real-Temporal cases.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from stigmer.controllers import (
    LOST_REASON,
    NO_RESULT_REASON,
    AgentExecutionController,
    Reconciler,
    WorkflowController,
    WorkflowExecutionController,
)
from stigmer.errors import (
    UNAVAILABLE_MESSAGE,
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    TemporalUnavailableError,
)
from stigmer.store import Message, Phase, Store, new_id
from stigmer.temporal import names
from stigmer.temporal.names import TaskQueues
from stigmer.temporal.session import TemporalSession
from stigmer.testing.eventually import eventually
from stigmer.workflows import workflowdoc
from stigmer.workflows.workflowdoc import ValidationResult

MIB = 1024 * 1024
TRICKY_TEXTS = [
    "héllo wörld — ünïcödé ✓ 你好 مرحبا 🚀👩‍👩‍👧 e\u0301",
    'it\'s "quoted" `backticked` \\ back\\slash',
    "'; DROP TABLE agent_executions; --",
    "line1\nline2\r\nline3\ttab",
    "   leading and trailing spaces   ",
    "with NUL \x00 inside",
    "x" * MIB,  # exactly 1 MiB of UTF-8: the limit is inclusive
    "é" * 300_000,  # 600 kB of UTF-8, 1.8 MB once JSON-escaped for Temporal: still fits a payload
]
DOC = {"name": "greet", "tasks": [{"name": "t1", "kind": "set", "values": {"k": "v"}},
                                   {"name": "t2", "kind": "agent", "agent": "echo", "message": "hi ${k}"}]}  # fmt: skip


# -- fakes -------------------------------------------------------------------------------------


class FakeAvailability:
    """Answers like TemporalConnection; `on_wait` may inject a creator (a successful fast path)."""

    def __init__(self, *, on_wait: Callable[[], None] | None = None) -> None:
        self.waits = 0
        self.reports: list[tuple[object, object]] = []
        self._on_wait = on_wait

    async def wait_available(self) -> bool:
        self.waits += 1
        if self._on_wait is not None:
            self._on_wait()
            return True
        return False

    def report_unavailable(self, error: BaseException | str, *, client: object = None) -> None:
        self.reports.append((error, client))

    def unavailable_details(self) -> tuple[str, float]:
        return "UNHEALTHY", 4.0


class FakeCreator:
    """Records starts; `fail` makes start raise; `block` makes it wait until cancelled.

    It also checks the record is stored when start is called: persist comes before start.
    """

    def __init__(self, read: Callable[[str], object], *, fail: BaseException | None = None, block: bool = False):
        self.client = object()
        self.starts: list[tuple[str, float]] = []
        self.entered = asyncio.Event()
        self._read = read
        self._fail = fail
        self._block = block

    async def start(self, execution_id: str, *, timeout: float) -> str:  # noqa: ASYNC109 (the creator API)
        self._read(execution_id)  # raises if not persisted
        self.starts.append((execution_id, timeout))
        self.entered.set()
        if self._block:
            await asyncio.Event().wait()
        if self._fail is not None:
            raise self._fail
        return f"wf/{execution_id}"


class FakeValidator:
    """The validation worker's answer, computed locally: enough to test the controller's flow."""

    def __init__(self, *, fail: BaseException | None = None) -> None:
        self.client = object()
        self.calls = 0
        self._fail = fail

    async def validate(self, document: str, *, timeout: float) -> ValidationResult:  # noqa: ASYNC109
        self.calls += 1
        if self._fail is not None:
            raise self._fail
        errors = workflowdoc.validate(document)
        return ValidationResult(valid=not errors, errors=errors)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def writes(store: Store) -> list[tuple[str, str]]:
    """Every committed change, to prove a refused request wrote nothing at all."""
    seen: list[tuple[str, str]] = []
    store.add_listener(lambda kind, id: seen.append((kind, id)))
    return seen


def aex_controller(store: Store, availability: FakeAvailability | None = None) -> AgentExecutionController:
    return AgentExecutionController(store=store, availability=availability or FakeAvailability(), start_timeout=3.0)


def connected_aex(store: Store, **creator: Any) -> tuple[AgentExecutionController, FakeCreator]:
    controller = aex_controller(store)
    fake = FakeCreator(store.get_agent_execution, **creator)
    controller.set_creator(fake)  # type: ignore[arg-type]
    return controller, fake


# -- agent executions: fail fast, no zombies ----------------------------------------------------


async def test_no_creator_is_unavailable_and_persists_nothing(store: Store, writes: list[object]) -> None:
    availability = FakeAvailability()
    controller = aex_controller(store, availability)
    with pytest.raises(TemporalUnavailableError) as caught:
        await controller.create(agent="echo", message="hi")
    assert str(caught.value) == UNAVAILABLE_MESSAGE
    assert (caught.value.state, caught.value.retry_after) == ("UNHEALTHY", 4.0)
    assert availability.waits == 1  # exactly one fast-path attempt
    assert writes == []
    assert controller.list() == ([], "")


async def test_fast_path_success_uses_the_newly_injected_creator(store: Store) -> None:
    fake = FakeCreator(store.get_agent_execution)
    availability = FakeAvailability(on_wait=lambda: controller.set_creator(fake))  # type: ignore[arg-type]
    controller = aex_controller(store, availability)
    record = await controller.create(agent="echo", message="hi")
    assert fake.starts == [(record.id, 3.0)]
    assert availability.waits == 1


async def test_create_persists_then_starts_and_returns_the_record(store: Store) -> None:
    controller, fake = connected_aex(store)
    record = await controller.create(agent="echo", message="hello", runtime_env={"API_KEY": "s3cr'et"})
    assert fake.starts == [(record.id, 3.0)]
    assert record.phase is Phase.PENDING
    assert (record.agent, record.message, record.runtime_env) == ("echo", "hello", {"API_KEY": "s3cr'et"})
    assert [(m.role, m.text) for m in record.messages] == [("user", "hello")]
    assert record.workflow_id == names.agent_execution_workflow_id(record.id)
    assert controller.get(record.id) == record


async def test_start_unavailable_deletes_the_record_and_reports(store: Store, writes: list[tuple[str, str]]) -> None:
    availability = FakeAvailability()
    controller = aex_controller(store, availability)
    error = TemporalUnavailableError("start agent execution: Temporal did not answer within 3 s")
    fake = FakeCreator(store.get_agent_execution, fail=error)
    controller.set_creator(fake)  # type: ignore[arg-type]
    with pytest.raises(TemporalUnavailableError) as caught:
        await controller.create(agent="echo", message="hi")
    assert str(caught.value) == UNAVAILABLE_MESSAGE
    ((started_id, _),) = fake.starts
    assert availability.reports == [(error, fake.client)]
    assert writes == [("agent_execution", started_id), ("agent_execution", started_id)]  # created, deleted
    with pytest.raises(NotFoundError):
        controller.get(started_id)
    assert controller.list() == ([], "")


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("bad")])
async def test_other_start_errors_delete_the_record_and_propagate(store: Store, error: Exception) -> None:
    controller, fake = connected_aex(store, fail=error)
    with pytest.raises(type(error)):
        await controller.create(agent="echo", message="hi")
    assert len(fake.starts) == 1
    assert store.list_agent_executions() == ([], "")


async def test_cancelled_create_deletes_the_record(store: Store) -> None:
    controller, fake = connected_aex(store, block=True)
    task = asyncio.create_task(controller.create(agent="echo", message="hi"))
    await asyncio.wait_for(fake.entered.wait(), 5)
    assert len(store.list_agent_executions()[0]) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert store.list_agent_executions() == ([], "")


# -- agent executions: input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"agent": "", "message": "hi"}, "agent"),
        ({"agent": "   ", "message": "hi"}, "agent"),
        ({"agent": "ec\nho", "message": "hi"}, "agent"),
        ({"agent": "a" * 300, "message": "hi"}, "agent"),
        ({"agent": "echo", "message": ""}, "message"),
        ({"agent": "echo", "message": " \n\t"}, "message"),
        ({"agent": "echo", "message": "x" * (MIB + 1)}, "message"),
        # 600k characters but 1.2 MB: the limit is in bytes.
        ({"agent": "echo", "message": "é" * 600_000}, "message"),
        # The size is checked before anything else, even an empty agent.
        ({"agent": "", "message": "x" * (MIB + 1)}, "message"),
        ({"agent": "echo", "message": "lone \ud800 surrogate"}, "message"),
        ({"agent": "echo", "message": None}, "message"),
        ({"agent": "echo", "message": "hi", "runtime_env": {"1ABC": "v"}}, "runtime_env[1ABC]"),
        ({"agent": "echo", "message": "hi", "runtime_env": {"A-B": "v"}}, "runtime_env[A-B]"),
        ({"agent": "echo", "message": "hi", "runtime_env": {"": "v"}}, "runtime_env[]"),
        ({"agent": "echo", "message": "hi", "runtime_env": {"FOO": 1}}, "runtime_env[FOO]"),
        ({"agent": "echo", "message": "hi", "runtime_env": {"FOO": "a\x00b"}}, "runtime_env[FOO]"),
        ({"agent": "echo", "message": "hi", "runtime_env": {f"K{i}": "v" for i in range(101)}}, "runtime_env"),
        ({"agent": "echo", "message": "hi", "runtime_env": {"BIG": "v" * 70_000}}, "runtime_env"),
        ({"agent": "echo", "message": "hi", "runtime_env": ["A"]}, "runtime_env"),
        # Found by tests/fuzz: within 1 MiB of UTF-8, but Temporal's JSON escapes (6 bytes for each
        # non-ASCII or control character) make these 3 and 6 MB, over its 2 MiB payload limit: the
        # execution was stored, then stuck IN_PROGRESS forever.
        ({"agent": "echo", "message": "é" * (MIB // 2)}, "message"),
        ({"agent": "echo", "message": "\x01" * MIB}, "message"),
        ({"agent": "echo", "message": "€" * 330_000, "runtime_env": {"E": "€" * 21_000}}, "message"),  # together
    ],
)
async def test_bad_create_input_names_the_field_before_anything_else(
    store: Store, writes: list[object], kwargs: dict[str, Any], field: str
) -> None:
    availability = FakeAvailability()
    controller = aex_controller(store, availability)  # no creator: input is checked first anyway
    with pytest.raises(InvalidArgumentError) as caught:
        await controller.create(**kwargs)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert len(str(caught.value)) < 300  # never echoes a megabyte back
    assert availability.waits == 0
    assert writes == []


@pytest.mark.parametrize("text", TRICKY_TEXTS, ids=range(len(TRICKY_TEXTS)))
async def test_text_is_stored_byte_for_byte(store: Store, text: str) -> None:
    controller, _ = connected_aex(store)
    env = {"QUOTED": text[:1000], "SQL": "'; DROP TABLE x; --"} if "\x00" not in text else {}
    record = await controller.create(agent="agént ✓ 'quoted'", message=text, runtime_env=env)
    again = controller.get(record.id)
    assert again.message.encode() == text.encode()
    assert again.messages[0].text == text
    assert again.runtime_env == env
    assert again.agent == "agént ✓ 'quoted'"


@pytest.mark.parametrize(
    "bad_id",
    ["", "aex-", "aex-123", "aex-01j9z3k4t8q6w2c5n7r1v0xbyd", "wex-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
     "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD' OR '1'='1", "x" * 10_000],
)  # fmt: skip
async def test_malformed_ids_are_invalid_argument(store: Store, bad_id: str) -> None:
    controller = aex_controller(store)
    with pytest.raises(InvalidArgumentError) as caught:
        controller.get(bad_id)
    assert caught.value.field == "id"
    with pytest.raises(InvalidArgumentError):
        controller.watch(bad_id)
    assert len(str(caught.value)) < 300


def test_unknown_id_is_not_found_naming_kind_and_id(store: Store) -> None:
    unknown = new_id("aex")
    with pytest.raises(NotFoundError) as caught:
        aex_controller(store).get(unknown)
    assert str(caught.value) == f"agent execution {unknown} not found"


async def test_list_filters_pages_and_rejects_bad_arguments(store: Store) -> None:
    controller, _ = connected_aex(store)
    made = [await controller.create(agent="echo", message=f"m{i}") for i in range(5)]
    store.mark_agent_execution_started(made[0].id)
    page, token = controller.list(page_size=2)
    assert [r.id for r in page] == [made[4].id, made[3].id] and token
    rest, end = controller.list(page_size=10, page_token=token)
    assert [r.id for r in rest] == [r.id for r in reversed(made[:3])] and end == ""
    assert [r.id for r in controller.list(phase="IN_PROGRESS")[0]] == [made[0].id]
    assert len(controller.list(phase="pending")[0]) == 4
    assert len(controller.list(phase="EXECUTION_PHASE_UNSPECIFIED")[0]) == 5
    for kwargs, field in [
        ({"phase": "RUNNING"}, "phase"),
        ({"phase": "PENDING; DROP TABLE x"}, "phase"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"page_token": "djE6d2V4LTAxSjlaM0s0VDhRNlcyQzVON1IxVjBYQllE"}, "page_token"),  # a wex- token
    ]:
        with pytest.raises(InvalidArgumentError) as caught:
            controller.list(**kwargs)
        assert caught.value.field == field, kwargs


# -- watch -------------------------------------------------------------------------------------


class CountingStore:
    """Counts live store listeners, to prove a watch unsubscribes however it ends."""

    def __init__(self, store: Store) -> None:
        self.live = 0
        original = store.add_listener

        def add_listener(fn: Callable[[str, str], None]) -> Callable[[], None]:
            unsubscribe = original(fn)
            self.live += 1
            done = False

            def counted() -> None:
                nonlocal done
                if not done:
                    done = True
                    self.live -= 1
                unsubscribe()

            return counted

        store.add_listener = add_listener  # type: ignore[method-assign]


async def test_watch_yields_current_then_each_change_and_ends_after_terminal(store: Store) -> None:
    counter = CountingStore(store)
    controller, _ = connected_aex(store)
    record = await controller.create(agent="echo", message="hi")
    seen: list[Phase] = []

    async def consume() -> None:
        async for update in controller.watch(record.id):
            seen.append(update.phase)

    task = asyncio.create_task(consume())
    await eventually(lambda: seen == [Phase.PENDING], timeout=5, what="the current record first")
    # Writes from another thread, as activities do.
    await asyncio.to_thread(store.mark_agent_execution_started, record.id)
    await eventually(lambda: seen == [Phase.PENDING, Phase.IN_PROGRESS], timeout=5, what="IN_PROGRESS")
    await asyncio.to_thread(store.mark_agent_execution_started, record.id)  # no change, no version bump
    reply = Message(role="agent", text="[echo] hi", at=1.0)
    await asyncio.to_thread(store.complete_agent_execution, record.id, replies=[reply])
    await asyncio.wait_for(task, 5)
    assert seen == [Phase.PENDING, Phase.IN_PROGRESS, Phase.COMPLETED]
    assert counter.live == 0


async def test_watch_of_a_terminal_record_yields_once(store: Store) -> None:
    controller, _ = connected_aex(store)
    record = await controller.create(agent="echo", message="hi")
    store.fail_agent_execution(record.id, error="nope")
    updates = [u async for u in controller.watch(record.id)]
    assert [(u.phase, u.error) for u in updates] == [(Phase.FAILED, "nope")]


def test_watch_of_an_unknown_id_raises_at_once(store: Store) -> None:
    with pytest.raises(NotFoundError):
        aex_controller(store).watch(new_id("aex"))


async def test_cancelled_or_closed_watch_unsubscribes(store: Store) -> None:
    counter = CountingStore(store)
    controller, _ = connected_aex(store)
    record = await controller.create(agent="echo", message="hi")
    stream = controller.watch(record.id)
    first = await anext(stream)
    assert first.phase is Phase.PENDING and counter.live == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert counter.live == 0

    started = asyncio.Event()

    async def consume() -> None:
        async for _ in controller.watch(record.id):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    assert counter.live == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert counter.live == 0


async def test_watch_sees_writes_that_notify_nobody(store: Store, tmp_path: Path) -> None:
    """A write through another connection (another process, say) is picked up by the recheck."""
    controller = AgentExecutionController(store=store, availability=FakeAvailability(), watch_recheck_interval=0.05)
    record = store.create_agent_execution(agent="echo", message="hi")
    with Store.open(tmp_path / "data") as other:
        updates: list[Phase] = []

        async def consume() -> None:
            async for update in controller.watch(record.id):
                updates.append(update.phase)

        task = asyncio.create_task(consume())
        await eventually(lambda: updates == [Phase.PENDING], timeout=5, what="first update")
        other.fail_agent_execution(record.id, error="elsewhere")
        await asyncio.wait_for(task, 5)
    assert updates == [Phase.PENDING, Phase.FAILED]


# -- workflows ---------------------------------------------------------------------------------


def wf_controller(store: Store, validator: FakeValidator | None, availability: FakeAvailability | None = None):
    controller = WorkflowController(store=store, availability=availability or FakeAvailability(), validate_timeout=3.0)
    controller.set_validator(validator)  # type: ignore[arg-type]
    return controller


async def test_validate_goes_through_the_validator_and_needs_it(store: Store) -> None:
    validator = FakeValidator()
    result = await wf_controller(store, validator).validate("{not json")
    assert not result.valid and result.errors and validator.calls == 1
    assert (await wf_controller(store, validator).validate(json.dumps(DOC))).valid
    with pytest.raises(TemporalUnavailableError):
        await wf_controller(store, None).validate(json.dumps(DOC))


async def test_create_stores_the_document_verbatim_with_its_validation(store: Store) -> None:
    validator = FakeValidator()
    controller = wf_controller(store, validator)
    text = json.dumps(DOC, indent=3, ensure_ascii=False).replace('"v"', '"välue \\"q\\" \'; DROP"')
    stored = await controller.create(text)
    assert stored.document == text and stored.valid and stored.validation_errors == ()
    assert controller.get("greet") == stored == controller.get(stored.id)
    invalid = await controller.create(json.dumps({"name": "broken", "tasks": []}))
    assert not invalid.valid and invalid.validation_errors == ("tasks: must contain at least one task",)
    assert validator.calls == 2
    with pytest.raises(AlreadyExistsError):
        await controller.create(text)
    assert validator.calls == 2  # refused before validating again
    assert [w.name for w in controller.list()[0]] == ["broken", "greet"]


@pytest.mark.parametrize(
    "document",
    ["", "  ", "{not json", "[1, 2]", '"text"', '{"tasks": []}', '{"name": ""}', '{"name": 7}',
     json.dumps({"name": "n" * 101}), json.dumps({"name": "a\nb"}), "[" * 100_000, " " * (MIB + 1),
     # Found by tests/fuzz: a lone surrogate cannot be stored as text; int() refuses > 4300 digits.
     '{"name": "\\ud800", "tasks": []}', '{"name": "x", "n": ' + "9" * 5000 + "}"],
)  # fmt: skip
async def test_create_refuses_documents_without_a_usable_name(
    store: Store, writes: list[object], document: str
) -> None:
    validator = FakeValidator()
    with pytest.raises(InvalidArgumentError) as caught:
        await wf_controller(store, validator).create(document)
    assert caught.value.field == "document"
    assert validator.calls == 0 and writes == []


async def test_workflow_create_unavailable_stores_nothing(store: Store, writes: list[object]) -> None:
    availability = FakeAvailability()
    error = TemporalUnavailableError("validate workflow document: Temporal is unavailable")
    validator = FakeValidator(fail=error)
    with pytest.raises(TemporalUnavailableError):
        await wf_controller(store, validator, availability).create(json.dumps(DOC))
    assert availability.reports == [(error, validator.client)]
    with pytest.raises(TemporalUnavailableError):
        await wf_controller(store, None, availability).create(json.dumps(DOC))
    assert availability.waits == 1
    assert writes == []


def test_workflow_get_errors(store: Store) -> None:
    controller = wf_controller(store, None)
    with pytest.raises(InvalidArgumentError) as caught:
        controller.get("")
    assert caught.value.field == "id_or_name"
    with pytest.raises(NotFoundError, match="workflow 'nope' not found"):
        controller.get("nope")


# -- workflow executions -----------------------------------------------------------------------


def wex_controller(store: Store, *, availability: FakeAvailability | None = None, **creator: Any):
    controller = WorkflowExecutionController(
        store=store, availability=availability or FakeAvailability(), start_timeout=3.0
    )
    fake = FakeCreator(store.get_workflow_execution, **creator)
    controller.set_creator(fake)  # type: ignore[arg-type]
    return controller, fake


async def test_workflow_execution_create_and_watch(store: Store) -> None:
    workflow = store.create_workflow(name="greet", document=json.dumps(DOC), valid=True)
    controller, fake = wex_controller(store)
    record = await controller.create(workflow="greet", input='{"user": "Zoë \'quoted\'"}')
    assert fake.starts == [(record.id, 3.0)]
    assert (record.workflow_id, record.input) == (workflow.id, '{"user": "Zoë \'quoted\'"}')
    assert [(t.name, t.kind) for t in record.tasks] == [("t1", "set"), ("t2", "agent")]
    assert (await controller.create(workflow=workflow.id)).input == ""
    stream = controller.watch(record.id)
    assert (await anext(stream)).phase is Phase.PENDING
    await asyncio.to_thread(store.complete_workflow_execution, record.id, output="{}")
    assert (await asyncio.wait_for(anext(stream), 5)).phase is Phase.COMPLETED
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 5)


async def test_workflow_execution_refusals(store: Store, writes: list[object]) -> None:
    store.create_workflow(name="greet", document=json.dumps(DOC), valid=True)
    store.create_workflow(name="bad", document="{}", valid=False, validation_errors=["tasks: required"])
    writes.clear()
    availability = FakeAvailability()
    controller, fake = wex_controller(store, availability=availability, fail=TemporalUnavailableError("down"))
    for kwargs, error, field in [
        ({"workflow": ""}, InvalidArgumentError, "workflow"),
        ({"workflow": "greet", "input": "[1]"}, InvalidArgumentError, "input"),
        ({"workflow": "greet", "input": "{oops"}, InvalidArgumentError, "input"),
        ({"workflow": "greet", "input": "x" * (MIB + 1)}, InvalidArgumentError, "input"),
        ({"workflow": "greet", "input": '{"user": "\\udc00"}'}, InvalidArgumentError, "input"),
        ({"workflow": "greet", "input": '{"n": 1e999}'}, InvalidArgumentError, "input"),
        # Under 1 MiB of UTF-8, but 2 MB once Temporal's JSON escapes it: it could never run.
        (
            {"workflow": "greet", "input": json.dumps({"u": "€" * 349_000}, ensure_ascii=False)},
            InvalidArgumentError,
            "input",
        ),
        ({"workflow": "nope"}, NotFoundError, None),
        ({"workflow": "bad"}, FailedPreconditionError, None),
    ]:
        with pytest.raises(error) as caught:
            await controller.create(**kwargs)
        if field is not None:
            assert caught.value.field == field  # type: ignore[attr-defined]
    assert fake.starts == [] and writes == []
    with pytest.raises(FailedPreconditionError, match="tasks: required"):
        await controller.create(workflow="bad")
    # The start fails with Temporal unavailable: the record is created, then removed.
    with pytest.raises(TemporalUnavailableError):
        await controller.create(workflow="greet")
    assert len(fake.starts) == 1 and len(availability.reports) == 1
    assert store.list_workflow_executions() == ([], "")
    for kwargs, field in [({"phase": "DONE"}, "phase"), ({"page_token": "zz"}, "page_token")]:
        with pytest.raises(InvalidArgumentError) as bad:
            controller.list(**kwargs)
        assert bad.value.field == field
    with pytest.raises(InvalidArgumentError):
        controller.get(new_id("aex"))


async def test_workflow_execution_without_creator_is_unavailable(store: Store, writes: list[object]) -> None:
    store.create_workflow(name="greet", document=json.dumps(DOC), valid=True)
    writes.clear()
    controller = WorkflowExecutionController(store=store, availability=FakeAvailability())
    with pytest.raises(TemporalUnavailableError):
        await controller.create(workflow="greet")
    assert writes == []


async def test_creates_refused_for_want_of_temporal_are_told_as_fast_fails(store: Store) -> None:
    """on_fast_fail(kind) hears of creates refused at require() (the metrics' counter); a cancel, a
    Validate or a start that failed later are not fast fails."""
    store.create_workflow(name="greet", document=json.dumps(DOC), valid=True)
    told: list[str] = []
    availability = FakeAvailability()
    agents = AgentExecutionController(store=store, availability=availability, on_fast_fail=told.append)
    runs = WorkflowExecutionController(store=store, availability=availability, on_fast_fail=told.append)
    workflows = WorkflowController(store=store, availability=availability, on_fast_fail=told.append)
    for create in (
        lambda: agents.create(agent="echo", message="hi"),
        lambda: runs.create(workflow="greet"),
        lambda: workflows.create(json.dumps({**DOC, "name": "other"})),
        lambda: workflows.validate(json.dumps(DOC)),
    ):
        with pytest.raises(TemporalUnavailableError):
            await create()
    assert told == ["agent_execution", "workflow_execution", "workflow"]
    agents.set_creator(FakeCreator(store.get_agent_execution, fail=TemporalUnavailableError("down")))  # type: ignore[arg-type]
    with pytest.raises(TemporalUnavailableError):
        await agents.create(agent="echo", message="hi")  # refused by Temporal after the start: no fast fail
    assert told == ["agent_execution", "workflow_execution", "workflow"]


# -- reconciler decision table (fake client; real Temporal in tests/integration) -------------------


class FakeClient:
    """Just what the reconciler uses: describe() through a handle, and start_workflow()."""

    def __init__(self, statuses: dict[str, WorkflowExecutionStatus | Exception]) -> None:
        self.statuses = statuses
        self.started: list[str] = []
        self.described: list[str] = []

    def get_workflow_handle(self, workflow_id: str) -> SimpleNamespace:
        async def describe(**_: object) -> SimpleNamespace:
            self.described.append(workflow_id)
            status = self.statuses.get(workflow_id)
            if status is None:
                raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
            if isinstance(status, Exception):
                raise status
            return SimpleNamespace(status=status)

        return SimpleNamespace(describe=describe)

    async def start_workflow(self, workflow: str, arg: Any, *, id: str, **_: object) -> None:
        self.started.append(id)


def test_reconciler_decision_table(store: Store) -> None:
    S = WorkflowExecutionStatus
    running = store.create_agent_execution(agent="a", message="running")
    pending_lost = store.create_agent_execution(agent="a", message="pending, lost")
    progress_lost = store.create_agent_execution(agent="a", message="in progress, lost")
    completed_no_result = store.create_agent_execution(agent="a", message="completed, no result")
    terminated = store.create_agent_execution(agent="a", message="terminated")
    done = store.create_agent_execution(agent="a", message="already done")
    for record in (progress_lost, completed_no_result, terminated):
        store.mark_agent_execution_started(record.id)
    store.fail_agent_execution(done.id, error="earlier")
    workflow = store.create_workflow(name="greet", document=json.dumps(DOC), valid=True)
    wex = store.create_workflow_execution(workflow=workflow, input="", task_names_kinds=[("t2", "agent")])
    store.mark_workflow_execution_started(wex.id)
    step = store.create_agent_execution(
        agent="a", message="step", parent_id=wex.id, id=names.step_agent_execution_id(wex.id, "t2")
    )
    store.mark_agent_execution_started(step.id)
    client = FakeClient({
        running.workflow_id: S.RUNNING,
        completed_no_result.workflow_id: S.COMPLETED,
        terminated.workflow_id: S.TERMINATED,
    })  # fmt: skip
    reconciler = Reconciler(store=store)
    report = asyncio.run(reconciler.reconcile(TemporalSession(client, queues=TaskQueues.with_suffix("unit"))))  # type: ignore[arg-type]

    def phase_error(record_id: str) -> tuple[Phase, str]:
        record = store.get_agent_execution(record_id)
        return record.phase, record.error

    assert phase_error(running.id) == (Phase.PENDING, "")
    assert phase_error(pending_lost.id) == (Phase.PENDING, "")
    assert client.started == [pending_lost.workflow_id]
    assert phase_error(progress_lost.id) == (Phase.FAILED, LOST_REASON)
    assert phase_error(completed_no_result.id) == (Phase.FAILED, NO_RESULT_REASON)
    assert phase_error(terminated.id)[0] is Phase.FAILED and "TERMINATED" in phase_error(terminated.id)[1]
    assert phase_error(done.id) == (Phase.FAILED, "earlier")
    # The lost workflow execution fails; then its step, now an orphan, is checked and fails too.
    assert store.get_workflow_execution(wex.id).error == LOST_REASON
    assert phase_error(step.id) == (Phase.FAILED, LOST_REASON)
    assert (report.checked, report.running, report.restarted, report.failed) == (7, 1, 1, 5)
    assert not report.interrupted and report.errors == 0


def test_reconciler_leaves_steps_to_a_live_parent_and_stops_when_temporal_goes(store: Store) -> None:
    workflow = store.create_workflow(name="greet", document=json.dumps(DOC), valid=True)
    wex = store.create_workflow_execution(workflow=workflow, input="", task_names_kinds=[("t2", "agent")])
    store.create_agent_execution(agent="a", message="step", parent_id=wex.id)
    first = store.create_agent_execution(agent="a", message="first")
    second = store.create_agent_execution(agent="a", message="second")
    unavailable = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
    client = FakeClient({wex.temporal_workflow_id: WorkflowExecutionStatus.RUNNING, first.workflow_id: unavailable})
    availability = FakeAvailability()
    reconciler = Reconciler(store=store, availability=availability)  # type: ignore[arg-type]
    report = asyncio.run(reconciler.reconcile(TemporalSession(client, queues=TaskQueues.with_suffix("unit"))))  # type: ignore[arg-type]
    assert report.interrupted and report.left_to_parent == 1
    # Told, so that the connection reconnects now and the next pass does the rest.
    assert [reported for _, reported in availability.reports] == [client]
    assert (report.checked, report.running, report.failed) == (2, 1, 0)
    assert second.workflow_id not in client.described
    assert all(r.phase is Phase.PENDING for r in store.list_agent_executions()[0])


def test_listener_thread_hop_survives_a_closed_loop(store: Store) -> None:
    """A write landing after the watcher's loop closed must not break the writer."""
    controller, _ = connected_aex(store)
    record = store.create_agent_execution(agent="a", message="m")

    stream = controller.watch(record.id)

    async def first_update() -> None:
        await anext(stream)  # subscribed; left open on purpose

    loop = asyncio.new_event_loop()
    loop.run_until_complete(first_update())
    loop.close()
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(errors, lambda: store.fail_agent_execution(record.id, error="x")))
    thread.start()
    thread.join(5)
    assert errors == [] and store.get_agent_execution(record.id).phase is Phase.FAILED
    asyncio.run(stream.aclose())  # type: ignore[attr-defined]


def _capture(errors: list[BaseException], fn: Callable[[], object]) -> None:
    try:
        fn()
    except BaseException as exc:
        errors.append(exc)
