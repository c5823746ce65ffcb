"""TemporalConnection's own logic with an injected connect and injected workers (no Temporal here;
the real thing is proven in tests/integration/test_connection.py)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from statemachine import State, Trigger
from stigmer.temporal.connection import ConnectionSettings, CreatorTargets, TemporalConnection
from stigmer.temporal.diagnose import diagnose
from stigmer.testing.eventually import eventually


class FakeService:
    def __init__(self) -> None:
        self.fail: Exception | None = None

    async def describe_namespace(self, request: Any, *, timeout: Any) -> None:  # noqa: ASYNC109 (SDK signature)
        if self.fail:
            raise self.fail


class FakeClient:
    def __init__(self, **kwargs: Any) -> None:
        self.workflow_service = FakeService()
        self.kwargs = kwargs


class FakeWorker:
    """Built and run on the workers' loop (a thread of its own): tests poke it with `on_its_loop`."""

    def __init__(self) -> None:
        self.is_running = False
        self._stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.crash: asyncio.Future[None] = self.loop.create_future()

    def on_its_loop(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

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
        return FakeClient(**kwargs)

    targets = CreatorTargets(
        agent_execution=lambda c: injected.__setitem__("aex", c),
        workflow_execution=lambda c: injected.__setitem__("wex", c),
        workflow_validation=lambda c: injected.__setitem__("val", c),
    )
    store = Store.open(tmp_path)
    connection = TemporalConnection(
        ConnectionSettings(host_port="127.0.0.1:1", health_interval=600, probe=False, liveness=False),
        store=store,
        runner=EchoAgentRunner(),
        targets=targets,
        connect=connect,
        workers_factory=workers_factory,
    )
    await connection.start()
    yield connection, built, injected
    await connection.close()
    store.close()


async def test_a_worker_fatal_error_marks_the_connection_unhealthy_at_once(rig):
    connection, built, injected = rig
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    assert all(injected.values()) and len(injected) == 3
    dying = built[0][1]
    dying.on_its_loop(dying.crash.set_result, None)  # the workflow execution worker dies
    await eventually(
        lambda: len(built) == 2 and connection.is_connected(), timeout=5, what="reconnected with fresh workers"
    )
    causes = [e.cause for e in connection.lifecycle.events if e.trigger == "health_failed"]
    assert causes == ["workflow execution worker stopped: RuntimeError: poller died: permission denied"]
    assert all(not w.is_running for w in built[0])


async def test_workers_stopped_on_purpose_do_not_report_failures(rig):
    connection, built, _ = rig
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    await connection.lifecycle.report_failure("test")
    await eventually(
        lambda: connection.lifecycle.state is State.CONNECTED and len(built) == 2, timeout=5, what="reconnected"
    )
    assert [e.trigger for e in connection.lifecycle.events].count("health_failed") == 1


async def test_unavailable_details_name_the_state_and_a_retry_hint(rig):
    connection, _, _ = rig
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    assert connection.unavailable_details() == ("CONNECTED", 1.0)
    await connection.lifecycle.shutdown()
    state, retry_after = connection.unavailable_details()
    assert state == "STOPPED" and retry_after >= 1


async def test_workers_and_api_get_their_own_clients_with_their_own_retry_policies(rig, monkeypatch):
    from stigmer.temporal import connection as module

    connection, _, injected = rig
    given: list[Any] = []
    monkeypatch.setattr(
        connection, "_build_workers", lambda client, **kw: given.append(client) or [FakeWorker() for _ in range(3)]
    )
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    await connection.lifecycle.report_failure("test")  # reconnect: the patched factory records its client
    await eventually(lambda: connection.is_connected() and given, timeout=5, what="reconnected")
    clients = connection.lifecycle.client
    assert clients is not None and clients.api is not clients.workers
    assert "retry_config" not in clients.workers.kwargs  # the SDK's patient default
    assert clients.api.kwargs["retry_config"] == module.API_RETRY
    assert given[-1] is clients.workers
    assert {creator.client for creator in injected.values()} == {clients.api}


async def test_a_report_about_a_replaced_api_client_is_ignored(rig):
    connection, _, _ = rig
    await eventually(connection.is_connected, timeout=5, what="CONNECTED")
    old = connection.lifecycle.client
    assert old is not None
    await connection.lifecycle.report_failure("test")
    await eventually(
        lambda: connection.is_connected() and connection.lifecycle.client is not old, timeout=5, what="reconnected"
    )
    connection.report_unavailable("late news", client=old.api)  # a create that used the old client
    await eventually(lambda: connection.reports_in_flight == 0, timeout=5, what="reports to settle")
    assert connection.lifecycle.state is State.CONNECTED
    connection.report_unavailable("current news", client=connection.lifecycle.client.api)
    await eventually(
        lambda: (
            [e.cause for e in connection.lifecycle.events if e.trigger == "health_failed"][-1:]
            == ["request failed: current news"]
        ),
        timeout=5,
        what="the current client's report to count",
    )


async def test_legacy_mode_shares_one_client_with_the_sdk_default_retries(tmp_path):
    from stigmer.store import Store
    from stigmer.temporal.agents import EchoAgentRunner

    dials: list[dict[str, Any]] = []

    async def connect(target: str, **kwargs: Any) -> FakeClient:
        dials.append(kwargs)
        return FakeClient(**kwargs)

    store = Store.open(tmp_path)
    try:
        connection = TemporalConnection(
            ConnectionSettings(host_port="127.0.0.1:1", api_retry=None),
            store=store,
            runner=EchoAgentRunner(),
            targets=CreatorTargets(agent_execution=print, workflow_execution=print, workflow_validation=print),
            connect=connect,
        )
        clients = await connection.dial()
    finally:
        store.close()
    assert clients.api is clients.workers and len(dials) == 1 and "retry_config" not in dials[0]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            RuntimeError(
                'Failed client connect: ConnectError("tcp connect error", Os { kind: ConnectionRefused, '
                'message: "Connection refused" })'
            ),
            "connection refused by h:1 (is Temporal running?)",
        ),
        (TimeoutError(), "no answer from h:1 in time"),
        (RuntimeError("weird"), "RuntimeError: weird"),
    ],
)
def test_errors_are_explained_in_words(error, expected):
    assert str(diagnose(error, "h:1")).startswith(expected)


class SlowToStopWorker(FakeWorker):
    """Like the SDK's worker under load: run() ends a while after shutdown(), once the completions
    in flight are flushed; shutdown() returns only after that."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = asyncio.Event()
        self.stopped = asyncio.Event()
        self.cancelled = False
        self.shutdown_returned = False

    async def run(self) -> None:
        try:
            await super().run()
            await self.flushed.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.stopped.set()

    async def shutdown(self) -> None:
        await super().shutdown()
        await self.stopped.wait()
        self.shutdown_returned = True


async def test_old_workers_slow_to_stop_are_left_to_finish_not_cancelled(tmp_path):
    # Found by the chaos soak: retirements took up to 9.6 s under load; cancelling run() after 5 s
    # skipped the SDK's finalize_shutdown (the core worker's threads stayed for good) and left the
    # shutdown() task pending until collected ("Task was destroyed but it is pending!").
    from loguru import logger

    from stigmer.store import Store
    from stigmer.temporal.agents import EchoAgentRunner

    built: list[list[SlowToStopWorker]] = []

    def workers_factory(client: Any, **kwargs: Any) -> list[SlowToStopWorker]:
        built.append([SlowToStopWorker() for _ in range(3)])
        return built[-1]

    async def connect(target: str, **kwargs: Any) -> FakeClient:
        return FakeClient()

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="INFO")
    store = Store.open(tmp_path)
    targets = CreatorTargets(
        agent_execution=lambda c: None, workflow_execution=lambda c: None, workflow_validation=lambda c: None
    )
    connection = TemporalConnection(
        ConnectionSettings(
            host_port="127.0.0.1:1", health_interval=600, probe=False, liveness=False, worker_shutdown_timeout=0.01
        ),
        store=store,
        runner=EchoAgentRunner(),
        targets=targets,
        connect=connect,
        workers_factory=workers_factory,
    )
    try:
        await connection.start()
        await eventually(connection.is_connected, timeout=5, what="CONNECTED")
        await connection.lifecycle.report_failure("test")
        await eventually(lambda: len(built) == 2 and connection.is_connected(), timeout=5, what="reconnected")
        await eventually(
            lambda: any("Old workers still stopping" in line for line in lines),
            timeout=5,
            what="the retirement to outlast worker_shutdown_timeout",
        )
        old = built[0]
        for worker in old:
            worker.on_its_loop(worker.flushed.set)
        await eventually(lambda: all(w.shutdown_returned for w in old), timeout=5, what="old workers to stop")
        assert not any(w.cancelled for w in old)
        assert not any("cancelling" in line for line in lines)
    finally:
        for worker in (w for workers in built for w in workers):
            worker.on_its_loop(worker.flushed.set)
        await connection.close()
        store.close()
        logger.remove(sink)


def test_attempt_lines_go_out_for_the_first_three_then_once_per_interval(tmp_path):
    from loguru import logger

    from statemachine.events import TransitionEvent
    from stigmer.store import Store
    from stigmer.temporal import log_contract as module
    from stigmer.temporal.agents import EchoAgentRunner

    store = Store.open(tmp_path)
    connection = TemporalConnection(
        ConnectionSettings(host_port="127.0.0.1:1"),
        store=store,
        runner=EchoAgentRunner(),
        targets=CreatorTargets(agent_execution=print, workflow_execution=print, workflow_validation=print),
    )
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), level="DEBUG")
    try:
        # 100 attempts a tenth of a second apart (a restarted Temporal warming up), each failing,
        # then one more ATTEMPT_LOG_INTERVAL after the third.
        for attempt in [*range(1, 101), 101]:
            at = attempt * 0.1 if attempt <= 100 else 0.3 + module.ATTEMPT_LOG_INTERVAL
            for trigger, source, dest in (
                ("reconnect", State.UNHEALTHY, State.RECONNECTING),
                ("reconnect_failed", State.RECONNECTING, State.UNHEALTHY),
            ):
                connection.transition_log(
                    TransitionEvent(
                        seq=attempt,
                        source=source,
                        dest=dest,
                        trigger=Trigger(trigger),
                        cause="refused",
                        attempt=attempt,
                        at=at,
                        wall=at,
                    )
                )
    finally:
        logger.remove(sink)
        store.close()
    loud = [message for level, message in lines if level in ("INFO", "WARNING")]
    # 10 s of attempts: the first three only; then the one a whole interval later.
    assert [(m.split(" (")[0], re.search(r"attempt (\d+)", m)[1]) for m in loud] == [
        (text, str(n))
        for n in (1, 2, 3, 101)
        for text in ("Attempting Temporal reconnection", "Temporal reconnection failed, will retry")
    ]
    assert sum(level == "DEBUG" for level, _ in lines) == 2 * 97
