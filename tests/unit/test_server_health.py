"""ServerHealth driven by a fake lifecycle (a real EventLog), read through the health servicer.

The real lifecycle against a real Temporal restart is in tests/integration/test_servicers.py.
"""

from __future__ import annotations

import time

from grpc_health.v1 import health_pb2

from statemachine import EventLog, State, TransitionEvent, Trigger
from stigmer.server.health import NOT_SERVING, OVERALL, SERVING, TEMPORAL_SERVICE, ServerHealth
from tests.unit.aio import spin_until


class FakeLifecycle:
    def __init__(self, state: State = State.DISCONNECTED) -> None:
        self.events = EventLog()
        self.state = state

    def is_connected(self) -> bool:
        return self.state is State.CONNECTED

    def move(self, dest: State, trigger: str) -> None:
        source, self.state = self.state, dest
        self.events.append(
            TransitionEvent(
                seq=self.events.next_seq(),
                source=source,
                dest=dest,
                trigger=Trigger(trigger),
                cause="",
                attempt=0,
                at=time.monotonic(),
                wall=time.time(),
            )
        )


def status(health: ServerHealth, service: str) -> int:
    # The servicer's own table: what Check answers.
    return health.servicer._server_status[service]


async def test_start_reports_the_current_state() -> None:
    for state, expected in ((State.DISCONNECTED, NOT_SERVING), (State.CONNECTED, SERVING)):
        health = ServerHealth(FakeLifecycle(state))
        await health.start()
        assert status(health, OVERALL) == SERVING
        assert status(health, TEMPORAL_SERVICE) == expected
        await health.close()


async def test_temporal_service_is_serving_exactly_while_connected() -> None:
    lifecycle = FakeLifecycle()
    health = ServerHealth(lifecycle)
    await health.start()
    seen: list[int] = []
    for dest, trigger in [
        (State.CONNECTING, "start"),
        (State.CONNECTED, "connect_ok"),
        (State.UNHEALTHY, "health_failed"),
        (State.RECONNECTING, "reconnect"),
        (State.UNHEALTHY, "reconnect_failed"),
        (State.RECONNECTING, "reconnect"),
        (State.CONNECTED, "reconnect_ok"),
    ]:
        lifecycle.move(dest, trigger)
        expected = SERVING if dest is State.CONNECTED else NOT_SERVING
        await spin_until(lambda e=expected: status(health, TEMPORAL_SERVICE) == e, what=f"{dest.name} applied")
        seen.append(status(health, TEMPORAL_SERVICE))
        assert status(health, OVERALL) == SERVING
    assert seen == [NOT_SERVING, SERVING, NOT_SERVING, NOT_SERVING, NOT_SERVING, NOT_SERVING, SERVING]
    await health.close()


async def test_a_burst_of_transitions_ends_on_the_last_state() -> None:
    lifecycle = FakeLifecycle(State.CONNECTED)
    health = ServerHealth(lifecycle)
    await health.start()
    # No loop turn between them: the pump must apply them in order, last one wins.
    lifecycle.move(State.UNHEALTHY, "health_failed")
    lifecycle.move(State.RECONNECTING, "reconnect")
    lifecycle.move(State.CONNECTED, "reconnect_ok")
    lifecycle.move(State.UNHEALTHY, "health_failed")
    await spin_until(lambda: health._pending.empty(), what="pump drained")
    await spin_until(lambda: status(health, TEMPORAL_SERVICE) == NOT_SERVING, what="last state applied")
    await health.close()


async def test_shutdown_sets_everything_not_serving_for_good() -> None:
    lifecycle = FakeLifecycle(State.CONNECTED)
    health = ServerHealth(lifecycle)
    await health.start()
    await health.set_not_serving_all()
    assert status(health, OVERALL) == NOT_SERVING and status(health, TEMPORAL_SERVICE) == NOT_SERVING
    lifecycle.move(State.UNHEALTHY, "health_failed")
    lifecycle.move(State.RECONNECTING, "reconnect")
    lifecycle.move(State.CONNECTED, "reconnect_ok")
    await spin_until(lambda: True)
    assert status(health, TEMPORAL_SERVICE) == NOT_SERVING
    assert not health.is_running
    await health.close()  # twice is fine


async def test_close_unsubscribes() -> None:
    lifecycle = FakeLifecycle()
    health = ServerHealth(lifecycle)
    await health.start()
    await health.close()
    lifecycle.move(State.CONNECTING, "start")
    lifecycle.move(State.CONNECTED, "connect_ok")
    assert health._pending.empty()
    assert status(health, TEMPORAL_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
