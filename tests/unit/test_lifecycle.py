"""The lifecycle machine driven directly: every edge, every illegal trigger, every failure point."""

from __future__ import annotations

import asyncio

import pytest
from transitions import MachineError

from statemachine import TRANSITIONS, ConnectionLifecycle, ManualClock, State
from tests.unit.aio import spin_until
from tests.unit.fake_effects import EFFECTS, FakeClient, FakeEffects

TRIGGERS = [edge.trigger for edge in TRANSITIONS]
ALLOWED = {(src, edge.trigger): edge.dest for edge in TRANSITIONS for src in edge.sources}


def make(effects: FakeEffects | None = None) -> tuple[ConnectionLifecycle[FakeClient], FakeEffects, list[str]]:
    """A lifecycle whose every transition is checked against the invariant."""
    effects = effects or FakeEffects()
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=ManualClock())
    violations: list[str] = []

    def check(event) -> None:
        connected = event.dest is State.CONNECTED
        if effects.workers_running != connected or effects.creators_injected != connected:
            violations.append(
                f"after {event.trigger} -> {event.dest.name}: workers={effects.workers_running} "
                f"creators={effects.creators_injected}"
            )
        if len(effects.open_clients) != int(connected):
            violations.append(f"after {event.trigger} -> {event.dest.name}: open clients {effects.open_clients}")

    lifecycle.events.subscribe(check)
    return lifecycle, effects, violations


# Raw trigger paths from DISCONNECTED to each state.
PATHS: dict[State, list[str]] = {
    State.DISCONNECTED: [],
    State.CONNECTING: ["start"],
    State.CONNECTED: ["start", "connect_ok"],
    State.UNHEALTHY: ["start", "connect_ok", "health_failed"],
    State.RECONNECTING: ["start", "connect_ok", "health_failed", "reconnect"],
    State.STOPPED: ["stop"],
}


async def fire(lifecycle: ConnectionLifecycle[FakeClient], effects: FakeEffects, trigger: str) -> bool:
    kwargs: dict[str, object] = {"cause": "test"}
    if trigger in ("connect_ok", "reconnect_ok"):
        kwargs["client"] = await effects.dial()
    return await getattr(lifecycle, trigger)(**kwargs)


async def drive_to(state: State) -> tuple[ConnectionLifecycle[FakeClient], FakeEffects, list[str]]:
    lifecycle, effects, violations = make()
    for trigger in PATHS[state]:
        await fire(lifecycle, effects, trigger)
    assert lifecycle.state is state
    return lifecycle, effects, violations


def test_table_matches_the_design():
    assert {(s.name, t, d.name) for (s, t), d in ALLOWED.items()} == {
        ("DISCONNECTED", "start", "CONNECTING"),
        ("CONNECTING", "connect_ok", "CONNECTED"),
        ("CONNECTING", "connect_failed", "DISCONNECTED"),
        ("CONNECTED", "health_failed", "UNHEALTHY"),
        ("UNHEALTHY", "reconnect", "RECONNECTING"),
        ("RECONNECTING", "reconnect_ok", "CONNECTED"),
        ("RECONNECTING", "reconnect_failed", "UNHEALTHY"),
        *{(s.name, "stop", "STOPPED") for s in State if s is not State.STOPPED},
    }


@pytest.mark.parametrize(
    ("source", "trigger"), sorted(ALLOWED, key=lambda k: (k[0].name, k[1])), ids=lambda v: getattr(v, "name", v)
)
async def test_every_declared_edge(source: State, trigger: str):
    lifecycle, effects, _ = await drive_to(source)
    seen = lifecycle.events.last_seq
    assert await fire(lifecycle, effects, trigger)
    assert lifecycle.state is ALLOWED[(source, trigger)]
    [event] = lifecycle.events.since(seen)
    assert (event.source, event.trigger, event.dest) == (source, trigger, ALLOWED[(source, trigger)])
    assert event.seq == seen + 1


ILLEGAL = [(s, t) for s in State for t in TRIGGERS if (s, t) not in ALLOWED]


@pytest.mark.parametrize(("source", "trigger"), ILLEGAL, ids=lambda v: getattr(v, "name", v))
async def test_every_illegal_trigger_raises_and_changes_nothing(source: State, trigger: str):
    lifecycle, effects, _ = await drive_to(source)
    seen, calls = lifecycle.events.last_seq, list(effects.calls)
    with pytest.raises(MachineError):
        await fire(lifecycle, effects, trigger)
    assert lifecycle.state is source
    assert lifecycle.events.last_seq == seen
    assert [c for c in effects.calls if c != "dial"] == [c for c in calls if c != "dial"]


def test_no_auto_transitions():
    lifecycle, _, _ = make()
    assert not hasattr(lifecycle, "to_CONNECTED")


async def test_attempt_connects_and_runs_effects_in_order():
    lifecycle, effects, violations = make()
    assert await lifecycle.attempt(cause="first dial")
    assert lifecycle.state is State.CONNECTED
    assert effects.calls == ["dial", "verify", "start_workers", "inject_creators"]
    assert [(e.trigger, e.dest) for e in lifecycle.events] == [
        ("start", State.CONNECTING),
        ("connect_ok", State.CONNECTED),
    ]
    assert lifecycle.client is not None and lifecycle.generation == 1
    assert violations == []


async def test_loss_and_reconnection_swap_everything():
    lifecycle, _effects, violations = make()
    await lifecycle.attempt()
    first = lifecycle.client
    assert await lifecycle.report_failure("health check failed: UNAVAILABLE")
    assert lifecycle.state is State.UNHEALTHY and lifecycle.client is None
    assert first is not None and first.closed == 1
    assert await lifecycle.attempt()
    assert lifecycle.state is State.CONNECTED and lifecycle.client is not first
    snap = lifecycle.snapshot()
    assert (snap.generation, snap.reconnect_count, snap.attempt) == (2, 1, 0)
    assert snap.last_error == "health check failed: UNAVAILABLE"
    assert violations == []


async def test_stale_failure_report_is_ignored():
    lifecycle, _, _ = make()
    await lifecycle.attempt()
    old = lifecycle.generation
    await lifecycle.report_failure("boom")
    await lifecycle.attempt()
    assert not await lifecycle.report_failure("late news about the old client", generation=old)
    assert lifecycle.state is State.CONNECTED


async def test_report_failure_when_not_connected_is_a_no_op():
    lifecycle, _, _ = make()
    assert not await lifecycle.report_failure("nothing to fail")
    assert lifecycle.state is State.DISCONNECTED and len(lifecycle.events) == 0


@pytest.mark.parametrize("effect", ["dial", "verify", "start_workers", "inject_creators"])
async def test_bring_up_failure_leaves_nothing_running(effect: str):
    """A failing bring-up effect fails the attempt; the machine never claims CONNECTED."""
    lifecycle, effects, violations = make()
    effects.fail(effect)
    assert not await lifecycle.attempt()
    assert lifecycle.state is State.DISCONNECTED
    last = list(lifecycle.events)[-1]
    assert last.trigger == "connect_failed" and f"{effect} exploded" in last.cause
    assert not effects.workers_running and not effects.creators_injected and not effects.open_clients
    # ... and the next attempt works.
    assert await lifecycle.attempt()
    assert violations == []


@pytest.mark.parametrize("effect", ["dial", "verify", "start_workers", "inject_creators"])
async def test_reconnect_failure_at_each_point_goes_back_to_unhealthy(effect: str):
    lifecycle, effects, violations = make()
    await lifecycle.attempt()
    await lifecycle.report_failure("lost")
    effects.fail(effect)
    assert not await lifecycle.attempt()
    assert lifecycle.state is State.UNHEALTHY
    assert list(lifecycle.events)[-1].trigger == "reconnect_failed"
    assert await lifecycle.attempt()
    assert violations == []


@pytest.mark.parametrize("effect", ["stop_workers", "withdraw_creators", "close_client"])
async def test_teardown_errors_are_recorded_and_do_not_block_leaving_connected(effect: str):
    lifecycle, effects, violations = make()
    await lifecycle.attempt()
    effects.fail(effect)
    assert await lifecycle.report_failure("lost")
    assert lifecycle.state is State.UNHEALTHY
    event = list(lifecycle.events)[-1]
    assert event.errors == (f"{effect}: Boom: {effect} exploded",)
    # Every teardown effect still ran exactly once.
    assert [effects.count(e) for e in ("withdraw_creators", "stop_workers", "close_client")] == [1, 1, 1]
    assert violations == []


@pytest.mark.parametrize("effect", EFFECTS)
async def test_invariant_holds_through_a_whole_life_with_each_effect_failing_once(effect: str):
    lifecycle, effects, violations = make()
    effects.fail(effect)
    for _ in range(3):  # connect (maybe after one failure)
        if await lifecycle.attempt():
            break
    assert lifecycle.is_connected()
    await lifecycle.report_failure("lost")
    while not await lifecycle.attempt():
        pass
    await lifecycle.shutdown()
    assert lifecycle.state is State.STOPPED
    assert not effects.workers_running and not effects.creators_injected and not effects.open_clients
    assert violations == []


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
async def test_shutdown_from_every_state_releases_everything_exactly_once(state: State):
    lifecycle, effects, violations = await drive_to(state)
    stops_before, closes_before = effects.count("stop_workers"), effects.count("close_client")
    await lifecycle.shutdown()
    await lifecycle.shutdown()  # twice is fine
    assert lifecycle.state is State.STOPPED
    expected = 1 if state is State.CONNECTED else 0
    assert effects.count("stop_workers") - stops_before == expected
    assert effects.count("close_client") - closes_before == expected
    assert not effects.workers_running and not effects.creators_injected
    assert not effects.open_clients - {c for c in effects.open_clients if state is not State.CONNECTED}
    if state is not State.STOPPED:
        assert list(lifecycle.events)[-1].trigger == "stop"
    assert violations == []


async def test_shutdown_cancels_an_in_flight_dial():
    effects = FakeEffects(dial_gate=asyncio.Event())
    lifecycle, effects, violations = make(effects)
    attempt = asyncio.create_task(lifecycle.attempt())
    await spin_until(lambda: "dial" in effects.calls, what="dial")
    assert lifecycle.state is State.CONNECTING
    await lifecycle.shutdown()
    assert await attempt is False
    assert lifecycle.state is State.STOPPED
    assert not effects.open_clients and not effects.workers_running
    assert violations == []


async def test_a_dial_that_outlives_its_timeout_fails_the_attempt():
    clock = ManualClock()
    effects = FakeEffects(dial_gate=asyncio.Event())
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock, attempt_timeout=3)
    attempt = asyncio.create_task(lifecycle.attempt())
    await spin_until(lambda: clock.sleepers > 0, what="timeout armed")
    clock.advance(3)
    assert await attempt is False
    assert lifecycle.state is State.DISCONNECTED
    assert "timed out" in lifecycle.snapshot().last_error


async def test_cancelling_the_caller_mid_transition_does_not_half_start_workers():
    lifecycle, effects, violations = make()
    task = asyncio.create_task(lifecycle.attempt())
    await spin_until(lambda: "start_workers" in effects.calls, what="start_workers")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The shielded transition finished on its own; the machine is consistent.
    await lifecycle.shutdown()
    assert lifecycle.state is State.STOPPED
    assert not effects.workers_running and not effects.open_clients
    assert violations == []


async def test_event_record_is_dense_ordered_and_complete():
    clock = ManualClock()
    effects = FakeEffects()
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock)
    effects.fail("dial", times=2)
    await lifecycle.attempt(cause="first dial")
    clock.advance(1)
    await lifecycle.attempt()
    clock.advance(2)
    await lifecycle.attempt()
    await lifecycle.report_failure("lost it")
    await lifecycle.shutdown()
    events = list(lifecycle.events)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.trigger, e.attempt, e.backoff) for e in events] == [
        ("start", 0, 0.0),
        ("connect_failed", 0, 1.0),
        ("start", 1, 1.0),
        ("connect_failed", 1, 2.0),
        ("start", 2, 2.0),
        ("connect_ok", 2, 0.0),
        ("health_failed", 0, 1.0),
        ("stop", 1, 0.0),
    ]
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[1].cause == "Boom: dial exploded"
    assert events[6].cause == "lost it"


async def test_snapshot_reports_the_next_retry():
    clock = ManualClock()
    effects = FakeEffects()
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock)
    effects.fail("dial", times=3)
    for _ in range(3):
        await lifecycle.attempt()
    snap = lifecycle.snapshot()
    assert snap.state is State.DISCONNECTED and snap.attempt == 3
    assert snap.next_retry_in == 4.0
    clock.advance(1.5)
    assert lifecycle.snapshot().next_retry_in == 2.5


async def test_failure_report_about_a_replaced_client_is_ignored():
    lifecycle, _, _ = make()
    await lifecycle.attempt()
    old = lifecycle.client
    await lifecycle.report_failure("boom")
    await lifecycle.attempt()
    assert not await lifecycle.report_failure("late news", client=old)
    assert lifecycle.state is State.CONNECTED
    assert await lifecycle.report_failure("current news", client=lifecycle.client)
