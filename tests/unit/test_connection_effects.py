"""TemporalConnection's own logic with an injected connect and injected workers (no Temporal here;
the real thing is proven in tests/integration/test_connection.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from statemachine import State
from stigmer.temporal.connection import ConnectionSettings, CreatorTargets, TemporalConnection, explain
from tests.support.eventually import eventually


class FakeService:
    def __init__(self) -> None:
        self.fail: Exception | None = None

    async def describe_namespace(self, request: Any, *, timeout: Any) -> None:  # noqa: ASYNC109 (SDK signature)
        if self.fail:
            raise self.fail


class FakeClient:
    def __init__(self) -> None:
        self.workflow_service = FakeService()


class FakeWorker:
    def __init__(self) -> None:
        self.is_running = False
        self._stop = asyncio.Event()
        self.crash: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        self.is_running = True
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({stop, self.crash}, return_when=asyncio.FIRST_COMPLETED)
        self.is_running = False
        stop.cancel()
        if self.crash.done():
            raise RuntimeError("poller died: permission denied")

    async def shutdown(self) -> None:
        self._stop.set()


@pytest.fixture
async def rig(tmp_path):
    from stigmer.store import Store
    from stigmer.temporal.agents import EchoAgentRunner

    built: list[list[FakeWorker]] = []
    injected: dict[str, object] = {}

    def workers_factory(client: Any, **kwargs: Any) -> list[FakeWorker]:
        workers = [FakeWorker() for _ in range(3)]
        built.append(workers)
        return workers

    async def connect(target: str, **kwargs: Any) -> FakeClient:
        return FakeClient()

    targets = CreatorTargets(
        agent_execution=lambda c: injected.__setitem__("aex", c),
        workflow_execution=lambda c: injected.__setitem__("wex", c),
        workflow_validation=lambda c: injected.__setitem__("val", c),
    )
    store = Store.open(tmp_path)
    connection = TemporalConnection(
        ConnectionSettings(host_port="127.0.0.1:1", health_interval=600, probe=False),
        store=store, runner=EchoAgentRunner(), targets=targets, connect=connect, workers_factory=workers_factory,
    )
    await connection.start()
    yield connection, built, injected
    await connection.close()
    store.close()


async def test_a_worker_fatal_error_marks_the_connection_unhealthy_at_once(rig):
    connection, built, injected = rig
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    assert all(injected.values()) and len(injected) == 3
    built[0][1].crash.set_result(None)  # the workflow execution worker dies
    await eventually(lambda: len(built) == 2 and connection.is_connected(), timeout=5,
                     what="reconnected with fresh workers")
    causes = [e.cause for e in connection.lifecycle.events if e.trigger == "health_failed"]
    assert causes == ["workflow execution worker stopped: RuntimeError: poller died: permission denied"]
    assert all(not w.is_running for w in built[0])


async def test_workers_stopped_on_purpose_do_not_report_failures(rig):
    connection, built, _ = rig
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    await connection.lifecycle.report_failure("test")
    await eventually(lambda: connection.lifecycle.state is State.CONNECTED and len(built) == 2, timeout=5,
                     what="reconnected")
    assert [e.trigger for e in connection.lifecycle.events].count("health_failed") == 1


async def test_unavailable_details_name_the_state_and_a_retry_hint(rig):
    connection, _, _ = rig
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    assert connection.unavailable_details() == ("CONNECTED", 1.0)
    await connection.lifecycle.shutdown()
    state, retry_after = connection.unavailable_details()
    assert state == "STOPPED" and retry_after >= 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError('Failed client connect: ConnectError("tcp connect error", Os { kind: ConnectionRefused, '
                      'message: "Connection refused" })'), "connection refused by h:1 (is Temporal running?)"),
        (TimeoutError(), "no answer from h:1 in time"),
        (RuntimeError("weird"), "RuntimeError: weird"),
    ],
)
def test_errors_are_explained_in_words(error, expected):
    assert explain(error, "h:1").startswith(expected)
