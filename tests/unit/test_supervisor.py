"""The retry timer, health ticker and fast path, on a manual clock: time moves only by hand."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from statemachine import BackoffPolicy, ConnectionLifecycle, ManualClock, State, Supervisor
from tests.unit.aio import settle
from tests.unit.fake_effects import Boom, FakeClient, FakeEffects


@dataclass
class Rig:
    clock: ManualClock
    effects: FakeEffects
    lifecycle: ConnectionLifecycle[FakeClient]
    supervisor: Supervisor[FakeClient]
    health: dict[str, int]

    async def advance_to_retry(self) -> None:
        """Move the clock to the retry the lifecycle scheduled, and let it run."""
        due = self.lifecycle.next_retry_at
        assert due is not None, f"no retry scheduled in {self.lifecycle.state}"
        self.clock.advance(due - self.clock.monotonic())
        await settle()

    def attempts_at(self) -> list[float]:
        return [e.at for e in self.lifecycle.events if e.trigger in ("start", "reconnect")]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock(start=0.0)
    effects = FakeEffects()
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock, backoff=BackoffPolicy())
    health = {"fail": 0, "hang": 0, "calls": 0}

    async def check(client: FakeClient) -> None:
        health["calls"] += 1
        if health["hang"]:
            await asyncio.Event().wait()
        if health["fail"]:
            raise Boom("namespace check failed")

    supervisor = Supervisor(lifecycle, check=check, health_interval=15, check_timeout=2, clock=clock)
    rig = Rig(clock, effects, lifecycle, supervisor, health)
    yield rig
    await supervisor.close()
    assert lifecycle.state is State.STOPPED
    assert not effects.workers_running and not effects.open_clients


async def test_first_attempt_is_immediate(rig: Rig):
    rig.supervisor.start()
    await settle()
    assert rig.lifecycle.state is State.CONNECTED
    assert rig.attempts_at() == [0.0]


async def test_retries_follow_the_backoff_not_the_health_tick(rig: Rig):
    rig.effects.fail("dial", times=10)
    rig.supervisor.start()
    await settle()
    for _ in range(10):
        await rig.advance_to_retry()
    # Attempts at t=0, then after 1, 2, 4, 8, 16, 30, 30, ... seconds of backoff.
    times = rig.attempts_at()
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps[:10] == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]
    assert rig.lifecycle.state is State.CONNECTED  # the 11th attempt worked
    # Reset after success: a loss now retries after 1 s again.
    rig.health["fail"] = 1
    rig.clock.advance(15)
    await settle()
    assert rig.lifecycle.state is State.UNHEALTHY
    rig.health["fail"] = 0
    lost_at = rig.clock.monotonic()
    rig.clock.advance(0.999)
    await settle()
    assert rig.lifecycle.state is State.UNHEALTHY
    rig.clock.advance(0.001)
    await settle()
    assert rig.lifecycle.state is State.CONNECTED
    assert rig.attempts_at()[-1] == pytest.approx(lost_at + 1)


async def test_health_tick_detects_failure_within_one_interval(rig: Rig):
    rig.supervisor.start()
    await settle()
    rig.health["fail"] = 1
    rig.clock.advance(14.9)
    await settle()
    assert rig.lifecycle.state is State.CONNECTED
    rig.clock.advance(0.1)
    await settle()
    assert rig.lifecycle.state is State.UNHEALTHY
    assert "namespace check failed" in rig.lifecycle.snapshot().last_error


async def test_a_hanging_health_check_counts_as_failed_after_its_timeout(rig: Rig):
    rig.supervisor.start()
    await settle()
    rig.health["hang"] = 1
    rig.clock.advance(15)
    await settle()
    assert rig.lifecycle.state is State.CONNECTED
    rig.clock.advance(2)
    await settle()
    assert rig.lifecycle.state is State.UNHEALTHY
    assert "timed out after 2s" in rig.lifecycle.snapshot().last_error


async def test_fast_path_attempts_at_once_instead_of_waiting_for_the_backoff(rig: Rig):
    rig.effects.fail("dial", times=6)
    rig.supervisor.start()
    await settle()
    for _ in range(5):
        await rig.advance_to_retry()
    assert rig.lifecycle.next_delay == 30  # a long backoff is scheduled
    rig.effects.failing.clear()  # Temporal is back
    before = rig.clock.monotonic()
    assert await rig.supervisor.request_attempt(wait=3) is True
    assert rig.lifecycle.state is State.CONNECTED
    assert rig.clock.monotonic() == before  # no time had to pass
    assert list(rig.lifecycle.events)[-2].cause == "fast path"


async def test_fast_path_is_rate_limited_and_single_flight(rig: Rig):
    rig.effects.fail("dial", times=100)
    rig.supervisor.start()
    await settle()
    dials = rig.effects.count("dial")
    results = await asyncio.gather(*(rig.supervisor.request_attempt(wait=3) for _ in range(10)))
    assert results == [False] * 10
    assert rig.effects.count("dial") == dials + 1  # ten callers, one attempt
    assert await rig.supervisor.request_attempt(wait=3) is False
    assert rig.effects.count("dial") == dials + 1  # rate limited within the second
    rig.clock.advance(0.5)
    await settle()
    rig.clock.advance(0.5)  # the scheduled 2 s retry is not due yet, the rate limit has passed
    assert await rig.supervisor.request_attempt(wait=3) is False
    assert rig.effects.count("dial") == dials + 2


async def test_fast_path_waits_a_bounded_time_for_an_attempt_in_flight(rig: Rig):
    rig.effects.dial_gate = asyncio.Event()
    rig.supervisor.start()
    await settle()
    assert rig.lifecycle.state is State.CONNECTING
    waiter = asyncio.create_task(rig.supervisor.request_attempt(wait=3))
    await settle()
    rig.clock.advance(3)
    assert await waiter is False  # gave up waiting; the dial is still in flight
    rig.effects.dial_gate.set()
    await settle()
    assert rig.lifecycle.state is State.CONNECTED


async def test_close_mid_dial_is_prompt_and_leaves_nothing(rig: Rig):
    rig.effects.dial_gate = asyncio.Event()
    rig.supervisor.start()
    await settle()
    await rig.supervisor.close()
    assert rig.lifecycle.state is State.STOPPED
    assert await rig.supervisor.request_attempt(wait=1) is False


async def test_close_while_waiting_for_a_retry(rig: Rig):
    rig.effects.fail("dial", times=1)
    rig.supervisor.start()
    await settle()
    assert rig.lifecycle.state is State.DISCONNECTED
    await rig.supervisor.close()
    await rig.supervisor.close()
    assert rig.lifecycle.state is State.STOPPED


async def test_no_task_left_behind(rig: Rig):
    before = {t for t in asyncio.all_tasks() if not t.done()}
    rig.supervisor.start()
    await settle()
    rig.health["fail"] = 1
    rig.clock.advance(15)
    await settle()
    await rig.supervisor.close()
    await settle()
    assert {t for t in asyncio.all_tasks() if not t.done()} == before


@pytest.fixture
async def probed() -> AsyncIterator[tuple[Rig, dict[str, bool | None]]]:
    clock = ManualClock(start=0.0)
    effects = FakeEffects()
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock)
    port: dict[str, bool | None] = {"open": False}  # None: the probe knows nothing yet

    async def check(client: FakeClient) -> None:
        return None

    async def probe(since: float) -> bool | None:
        return port["open"]

    supervisor = Supervisor(lifecycle, check=check, clock=clock, probe=probe, probe_interval=0.5, eager_window=10)
    yield Rig(clock, effects, lifecycle, supervisor, {}), port
    await supervisor.close()


async def tick(rig: Rig, seconds: float, step: float = 0.5) -> None:
    for _ in range(round(seconds / step)):
        rig.clock.advance(step)
        await settle()


async def test_probe_connects_as_soon_as_the_port_opens(probed):
    rig, port = probed
    rig.effects.fail("dial", times=100)  # down for a while: backoff grows to 30 s
    rig.supervisor.start()
    await settle()
    for _ in range(5):
        await rig.advance_to_retry()
    assert rig.lifecycle.next_delay == 30
    rig.effects.failing.clear()
    port["open"] = True  # Temporal is back
    await tick(rig, 0.5)
    assert rig.lifecycle.state is State.CONNECTED
    assert list(rig.lifecycle.events)[-2].cause == "Temporal answers again"


async def test_probe_keeps_trying_while_the_server_warms_up(probed):
    rig, port = probed
    rig.effects.fail("dial", times=4)
    rig.supervisor.start()
    await settle()
    await tick(rig, 0.5)  # the probe finds the port closed
    assert rig.lifecycle.state is State.DISCONNECTED
    port["open"] = True
    # The port opened while the scheduled retry at t=1 was due (it runs, and fails: the namespace
    # is not ready yet); the eager window then attempts at once, 0.5 s and 1 s later (doubling
    # from the probe interval), where the backoff alone would wait until t=7.
    await tick(rig, 3.0)
    assert rig.lifecycle.state is State.CONNECTED
    assert rig.attempts_at() == [0, 1, 1.5, 2.0, 3.0]


async def test_an_always_open_port_costs_no_extra_attempts(probed):
    rig, port = probed
    port["open"] = True  # e.g. a black hole: accepts, never answers
    rig.effects.fail("dial", times=100)
    rig.supervisor.start()
    await settle()
    await tick(rig, 30)
    # Only the backoff schedule: t=0, 1, 3, 7, 15 -- and 31 is still ahead.
    assert rig.attempts_at() == [0, 1, 3, 7, 15]


async def test_probe_sees_a_port_that_opened_during_a_failing_attempt(probed):
    rig, port = probed
    rig.effects.fail("dial", times=2)
    rig.effects.dial_gate = asyncio.Event()
    rig.supervisor.start()
    await settle()
    rig.effects.dial_gate.set()  # first dial fails
    await settle()
    await tick(rig, 0.5)  # the probe finds the port closed
    rig.effects.dial_gate.clear()
    await tick(rig, 0.5)  # the scheduled retry at t=1 is now in flight, held at the gate...
    assert rig.lifecycle.state is State.CONNECTING
    port["open"] = True  # ... while Temporal opens its port
    await tick(rig, 0.5)
    rig.effects.dial_gate.set()  # the in-flight dial fails (it started before the port opened)
    await settle()
    await tick(rig, 0.5)
    assert rig.lifecycle.state is State.CONNECTED  # the probe saw the edge; no 2 s backoff wait
    assert rig.clock.monotonic() == 2.0


@pytest.mark.parametrize("before", [None, True], ids=["nothing-known", "answered-then-lost"])
async def test_an_attempt_that_saw_a_no_is_superseded_when_temporal_answers(probed, before):
    # Behind a proxy that holds connections: the loss is noticed, the probe has no verdict yet
    # (its first RPC hangs for its deadline) -- or its first RPC was answered just before the
    # path died -- when the retry 1 s later starts, and that retry hangs too. A "no" arrives
    # while it hangs; when Temporal answers, waiting out the attempt's time-out (and then a
    # backoff) would cost seconds: it is given up for a fresh one.
    rig, port = probed
    port["open"] = True
    rig.supervisor.start()
    await settle()
    assert rig.lifecycle.state is State.CONNECTED
    port["open"] = before
    rig.effects.dial_gate = asyncio.Event()
    await rig.lifecycle.report_failure("health probe failed: the connection went silent")
    await tick(rig, 1.0)  # the 1 s retry is in flight, held
    assert rig.lifecycle.state is State.RECONNECTING
    port["open"] = False  # the probe's first RPC gave up
    await tick(rig, 0.5)
    port["open"] = True  # Temporal answers again
    rig.effects.dial_gate = None
    await tick(rig, 0.5)
    assert rig.lifecycle.state is State.CONNECTED
    assert rig.clock.monotonic() == 2.0
    causes = [e.cause for e in rig.lifecycle.events][-3:]
    assert causes[0] == "given up for a fresh attempt: Temporal answers again", causes


async def test_an_attempt_begun_while_temporal_answers_is_not_superseded(probed):
    # The first dial at start-up (or an eager one) begun when the probe knew nothing or said
    # "yes": a "yes" arriving while it runs must not restart it.
    rig, port = probed
    port["open"] = None
    rig.effects.dial_gate = asyncio.Event()
    rig.supervisor.start()
    await settle()
    port["open"] = True
    await tick(rig, 1.0)
    assert rig.lifecycle.state is State.CONNECTING
    rig.effects.dial_gate.set()
    await settle()
    assert rig.lifecycle.state is State.CONNECTED
    assert [e.trigger for e in rig.lifecycle.events] == ["start", "connect_ok"]


async def test_a_constant_backoff_at_the_health_interval_reproduces_the_original_design():
    """Retries every health interval (the Go server's design, which bench/legacy.py builds this way)."""
    clock = ManualClock(start=0.0)
    effects = FakeEffects()
    backoff = BackoffPolicy(initial=15, cap=15)
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock, backoff=backoff)

    async def check(client: FakeClient) -> None:
        return None

    supervisor = Supervisor(lifecycle, check=check, clock=clock, health_interval=15)
    effects.fail("dial", times=3)
    supervisor.start()
    try:
        await settle()
        for _ in range(4):
            clock.advance(15)
            await settle()
        attempts = [e.at for e in lifecycle.events if e.trigger == "start"]
        assert attempts == [0, 15, 30, 45]
        assert lifecycle.state is State.CONNECTED
    finally:
        await supervisor.close()


async def test_probing_is_fast_early_in_an_outage_then_slows_down():
    clock = ManualClock(start=0.0)
    effects = FakeEffects()
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock)
    probes: list[float] = []

    async def check(client: FakeClient) -> None:
        return None

    async def probe(since: float) -> bool | None:
        probes.append(clock.monotonic())
        return False  # Temporal stays down

    supervisor = Supervisor(
        lifecycle,
        check=check,
        clock=clock,
        probe=probe,
        probe_interval=0.5,
        probe_slow_interval=2.0,
        probe_fast_for=5.0,
    )
    effects.fail("dial", times=1000)
    supervisor.start()
    rig = Rig(clock, effects, lifecycle, supervisor, {})
    try:
        await settle()
        await tick(rig, 15)
        early = [t for t in probes if t <= 5.0]
        late = [t for t in probes if t > 6.0]
        assert len(early) >= 9  # every 0.5 s (probes pause while an attempt is in flight)
        assert all(b - a == 2.0 for a, b in itertools.pairwise(late)) and len(late) >= 4, probes
    finally:
        await supervisor.close()


async def test_eager_attempts_come_at_growing_spacing(probed):
    # Found by the chaos soak: a proxy that accepts and resets looks like a port opening again
    # and again; an attempt per 50 ms probe flooded the log and dialled 20 times a second.
    rig, port = probed
    port["open"] = False
    rig.effects.fail("dial", times=1000)
    rig.supervisor.start()
    await settle()
    await tick(rig, 0.5)
    port["open"] = True
    await tick(rig, 10)
    eager = [e.at for e in rig.lifecycle.events if e.trigger == "start" and e.cause == "Temporal answers again"]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(eager)]
    # At once, then 0.5, 1, 1, ... (the 1 s cap) within the 10 s window; backoff retries mix in.
    assert gaps[:2] == [0.5, 1.0] and len(eager) <= 12, eager


@pytest.fixture
async def watched() -> AsyncIterator[tuple[Rig, dict[str, object]]]:
    clock = ManualClock(start=0.0)
    effects = FakeEffects()
    lifecycle: ConnectionLifecycle[FakeClient] = ConnectionLifecycle(effects, clock=clock)
    answer: dict[str, object] = {"reason": None, "hang": False, "calls": []}

    async def check(client: FakeClient) -> None:
        return None

    async def liveness() -> str | None:
        answer["calls"].append(clock.monotonic())  # type: ignore[attr-defined]
        if answer["hang"]:
            await asyncio.Event().wait()
        return answer["reason"]  # type: ignore[return-value]

    supervisor = Supervisor(
        lifecycle,
        check=check,
        clock=clock,
        health_interval=15,
        liveness=liveness,
        liveness_interval=1.0,
        liveness_timeout=6.0,
    )
    yield Rig(clock, effects, lifecycle, supervisor, {}), answer
    await supervisor.close()


async def test_liveness_reports_a_lost_temporal_within_one_interval(watched):
    rig, answer = watched
    rig.supervisor.start()
    await settle()
    assert rig.lifecycle.state is State.CONNECTED
    await tick(rig, 3.0, step=1.0)
    assert rig.lifecycle.state is State.CONNECTED  # answering: nothing happens
    answer["reason"] = "connection refused by 127.0.0.1:7233 (is Temporal running?)"
    await tick(rig, 1.0, step=1.0)
    # Reported at once, not at the 15 s health tick; the reconnect attempt is then due.
    failed = [e for e in rig.lifecycle.events if e.trigger == "health_failed"]
    assert len(failed) == 1 and failed[0].at == 4.0
    assert failed[0].cause == "health probe failed: connection refused by 127.0.0.1:7233 (is Temporal running?)"


async def test_liveness_runs_only_while_connected(watched):
    rig, answer = watched
    rig.effects.fail("dial", times=3)  # DISCONNECTED for t < 7
    rig.supervisor.start()
    await settle()
    await tick(rig, 9.0, step=1.0)
    assert rig.lifecycle.state is State.CONNECTED
    connected_at = next(e.at for e in rig.lifecycle.events if e.dest is State.CONNECTED)
    assert answer["calls"] and min(answer["calls"]) > connected_at  # type: ignore[type-var]


async def test_a_liveness_call_that_hangs_is_reported_after_its_bound(watched):
    rig, answer = watched
    rig.supervisor.start()
    await settle()
    answer["hang"] = True
    await tick(rig, 6.0, step=1.0)
    assert rig.lifecycle.state is State.CONNECTED  # still within the bound
    await tick(rig, 1.0, step=1.0)
    failed = [e for e in rig.lifecycle.events if e.trigger == "health_failed"]
    assert [e.cause for e in failed] == ["health probe failed: no answer within 6s"]


async def test_an_attempt_hanging_on_a_held_connection_is_superseded_when_temporal_answers(probed):
    # Behind a proxy that holds connections open, an attempt begun during the outage hangs for its
    # whole timeout (here: forever). When the probe hears Temporal again, a fresh attempt starts.
    rig, port = probed
    rig.effects.fail("dial", times=1)
    rig.supervisor.start()
    await settle()  # the first dial fails: DISCONNECTED, retry due at t=1
    await tick(rig, 0.5)  # the probe: no answer
    rig.effects.dial_gate = asyncio.Event()  # from now on a dial hangs until the gate opens
    await tick(rig, 0.5)  # t=1: the scheduled retry starts, and hangs
    assert rig.lifecycle.state is State.CONNECTING
    port["open"] = True  # Temporal answers again
    rig.effects.dial_gate = None  # the fresh connection works
    await tick(rig, 0.5)
    assert rig.lifecycle.state is State.CONNECTED
    causes = [e.cause for e in rig.lifecycle.events if e.trigger == "connect_failed"]
    assert causes[-1] == "given up for a fresh attempt: Temporal answers again"
    assert rig.clock.monotonic() == 1.5


async def test_supersede_without_an_attempt_in_flight_does_nothing(rig: Rig):
    assert rig.lifecycle.supersede("nothing to give up") is False


async def test_a_misconfiguration_retries_at_the_cap_and_gets_no_fast_attempts(rig: Rig):
    from statemachine import Misconfiguration

    rig.effects.fail("dial", times=3, error=Misconfiguration("namespace 'x' does not exist"))
    rig.supervisor.start()
    await settle()
    assert rig.lifecycle.state is State.DISCONNECTED and rig.lifecycle.misconfigured
    assert rig.lifecycle.next_delay == 30  # straight to the cap, not 1 s
    assert await rig.supervisor.request_attempt(wait=1.0) is False  # a request does not draw an attempt
    assert rig.attempts_at() == [0]
