"""--exit-after-outage: duration parsing and the watcher, on a real lifecycle with fake effects."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import pytest

from statemachine import BackoffPolicy, ConnectionLifecycle, ManualClock, State
from stigmer.outage import OutageLimit, parse_duration
from stigmer.temporal.connection import JITTER, ConnectionSettings
from tests.unit.fake_effects import FakeEffects

Lifecycle = ConnectionLifecycle[object]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("2h", 7200.0), ("500ms", 0.5), (" 5 m ", 300.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5s", "5 minutes", "1d", "s"])
def test_bad_durations_say_what_they_want(text: str) -> None:
    with pytest.raises(ValueError, match="a duration like 90s, 5m or 1h"):
        parse_duration(text)


@contextlib.asynccontextmanager
async def watched(limit_seconds: float) -> AsyncIterator[tuple[Lifecycle, OutageLimit, asyncio.Event]]:
    """A real lifecycle on fake effects, watched by an OutageLimit until the block ends."""
    lifecycle: ConnectionLifecycle[object] = ConnectionLifecycle(FakeEffects(), clock=ManualClock(start=0.0))
    limit = OutageLimit(lifecycle, limit_seconds)
    stop = asyncio.Event()
    watch = asyncio.create_task(limit.watch(stop))
    try:
        yield lifecycle, limit, stop
    finally:
        watch.cancel()


async def test_the_limit_counts_from_start_and_from_each_loss() -> None:
    async with watched(0.3) as (lifecycle, limit, stop):
        await lifecycle.attempt()  # connected within the limit: the count stops
        assert lifecycle.state is State.CONNECTED
        await asyncio.sleep(0.4)  # past the limit, but connected: nothing happens
        assert not stop.is_set()
        await lifecycle.report_failure("health check failed")
        await asyncio.wait_for(stop.wait(), timeout=2.0)  # 0.3 s after the loss
        assert limit.tripped


async def test_reconnecting_in_time_resets_the_count() -> None:
    async with watched(0.5) as (lifecycle, limit, stop):
        for _ in range(3):  # 0.3 s away, then back: three times, 0.9 s in all
            await asyncio.sleep(0.3)
            await lifecycle.attempt()
            await lifecycle.report_failure("flap")
        assert not stop.is_set() and not limit.tripped


def test_backoff_is_jittered_by_default_within_twenty_percent() -> None:
    policy = ConnectionSettings().backoff
    assert policy.jitter == JITTER == 0.2
    seeded = BackoffPolicy(jitter=JITTER, rng=random.Random(12))
    for failures in range(1, 9):
        base = seeded.base_delay(failures)
        delays = {seeded.delay(failures) for _ in range(50)}
        assert len(delays) > 1  # spread, not lockstep
        assert all(min(0.8 * base, 30) <= d <= min(1.2 * base, 30.0) for d in delays), (failures, delays)
