"""ComebackProbe's schedule on an injected clock, with a fake port and fake health RPCs."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from stigmer.temporal.probe import ComebackProbe
from tests.unit.aio import settle


@dataclass
class World:
    now: float = 0.0
    port_open: bool = False
    #: What the next RPCs answer: None (answered) or a reason; "hang" never finishes by itself.
    answer: str | None = "no answer"
    asked_at: list[float] = field(default_factory=list)
    hints: int = 0  # TCP connects made
    #: RPCs in flight that hang: each finishes with what the test sets as its result.
    hanging: list[asyncio.Future[str | None]] = field(default_factory=list)

    def finish(self, index: int, answer: str | None = "no answer from 127.0.0.1:7233 in time") -> None:
        self.hanging[index].set_result(answer)


@pytest.fixture
async def rig() -> AsyncIterator[tuple[World, ComebackProbe]]:
    world = World()

    async def port_open() -> bool:
        world.hints += 1
        return world.port_open

    async def ask(timeout: float) -> str | None:  # noqa: ASYNC109
        world.asked_at.append(world.now)
        if world.answer == "hang":
            finished: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            world.hanging.append(finished)
            return await finished
        return world.answer

    probe = ComebackProbe(
        "127.0.0.1:7233",
        port_open=port_open,
        clock=lambda: world.now,
        ask=ask,
        rpc_interval=0.5,
        rpc_slow_interval=0.7,
        slow_after=60.0,
    )
    yield world, probe
    for finished in world.hanging:
        if not finished.done():
            finished.set_result("no answer")
    await probe.close()


async def run_for(
    world: World, probe: ComebackProbe, seconds: float, *, tick: float = 0.05, since: float = 0.0
) -> list[bool | None]:
    seen = []
    for _ in range(round(seconds / tick)):
        world.now = round(world.now + tick, 6)
        seen.append(await probe(since))
        await settle()
    return seen


async def test_a_refusing_port_costs_no_rpc(rig):
    world, probe = rig
    assert not any(await run_for(world, probe, 5.0))
    assert world.asked_at == [] and probe.last_reason == "port refuses connections"


async def test_a_port_that_opens_is_asked_at_once_and_an_answer_counts(rig):
    world, probe = rig
    await run_for(world, probe, 1.0)
    world.port_open, world.answer = True, None
    world.now += 0.05
    assert await probe(0.0) is False  # the RPC runs in the background...
    await settle()
    assert world.asked_at == [world.now]  # ... launched on the edge, not at the next interval
    assert await probe(0.0) is True and probe.last_reason == ""


async def test_an_always_accepting_port_is_asked_twice_a_second_then_less(rig):
    world, probe = rig
    world.port_open = True  # a load balancer: accepts whether Temporal is there or not
    seen = await run_for(world, probe, 70.0)
    assert not any(seen)
    early = [t for t in world.asked_at if t < 60]
    late = [t for t in world.asked_at if t > 61]
    assert all(round(b - a, 3) == 0.5 for a, b in itertools.pairwise(early)), early[:5]
    assert all(round(b - a, 3) == 0.7 for a, b in itertools.pairwise(late)), late[:5]
    assert probe.rpcs == len(world.asked_at) <= 2 * 70


async def test_an_rpc_hanging_on_a_held_connection_delays_nothing(rig):
    world, probe = rig
    world.port_open, world.answer = True, "hang"
    await run_for(world, probe, 1.0)  # two RPCs hang (a proxy holds their connections)
    assert len(world.hanging) == 2
    world.answer = None  # Temporal is back: the next RPC, on a fresh connection, is answered
    seen = await run_for(world, probe, 0.6)
    assert seen[-1] is True
    world.finish(0)  # an old hanging RPC gives up late: it must not undo the newer answer
    await settle()
    assert await probe(0.0) is True


async def test_an_answer_from_before_the_outage_says_nothing_about_it(rig):
    world, probe = rig
    world.port_open, world.answer = True, None
    assert (await run_for(world, probe, 1.0))[-1] is True  # Temporal answered; then CONNECTED
    world.now += 30.0
    world.answer = "hang"  # a new outage, behind a proxy that holds: its RPCs hang
    outage = world.now
    seen = await run_for(world, probe, 0.9, since=outage)
    assert set(seen) == {None}  # not the stale "yes" of the last outage: nothing known yet
    world.finish(0)  # the first RPC of this outage gives up
    await settle()
    assert await probe(outage) is False and "in time" in probe.last_reason


async def test_a_refusal_outranks_an_older_rpc_that_answers_late(rig):
    world, probe = rig
    world.port_open, world.answer = True, "hang"
    await run_for(world, probe, 0.05)
    # Temporal went away after that RPC was sent: the next one is refused, and so are hints.
    world.port_open, world.answer = False, "connection refused by 127.0.0.1:7233 (is Temporal running?)"
    assert (await run_for(world, probe, 0.6))[-1] is False
    world.finish(0, None)  # the RPC from before answers late: it says nothing about now
    await settle()
    assert await probe(0.0) is False


async def test_behind_a_balancer_the_rpcs_alone_watch_until_one_is_refused(rig):
    world, probe = rig
    world.port_open = True  # accepts whatever is behind it: a connect each tick would prove nothing
    await run_for(world, probe, 10.0)
    assert world.hints == 1 and len(world.asked_at) == 20
    world.port_open, world.answer = False, "connection refused by 127.0.0.1:7233 (is Temporal running?)"
    await run_for(world, probe, 0.5)  # the next RPC is refused: a bare port after all, now closed
    hints = world.hints
    assert hints >= 2
    await run_for(world, probe, 1.0)
    assert world.hints == hints + 20 and len(world.asked_at) == 21  # hints each tick, no RPC
    world.port_open, world.answer = True, None
    seen = await run_for(world, probe, 0.1)
    assert seen[-1] is True and len(world.asked_at) == 22  # asked at once when it opened


async def test_each_rpc_result_is_told_to_on_result_but_tcp_hints_are_not(rig):
    """The metrics' stigmer_temporal_probe_total{probe="comeback"} hears one result per RPC."""
    world, probe = rig
    results: list[bool] = []
    probe.on_result = results.append
    await run_for(world, probe, 1.0)  # the port refuses: hints only
    assert results == [] and world.hints > 0
    world.port_open = True
    await run_for(world, probe, 0.6)
    world.answer = None
    await run_for(world, probe, 0.6)
    assert results == [False] * (len(world.asked_at) - 1) + [True]


async def test_the_liveness_probe_tells_on_result_too() -> None:
    from stigmer.temporal.probe import TemporalProbe
    from stigmer.testing.ports import free_port

    probe = TemporalProbe(f"127.0.0.1:{free_port()}")  # nobody listens
    results: list[bool] = []
    probe.on_result = results.append
    try:
        assert await probe.answers(2.0) is not None
    finally:
        await probe.close()
    assert results == [False]
