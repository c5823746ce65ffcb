"""Creators abandoned with their connection answer at once, not at their deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stigmer.errors import TemporalUnavailableError
from stigmer.temporal.creators import AgentExecutionCreator
from stigmer.temporal.names import TaskQueues


class SilentClient:
    """start_workflow on a dead path: never answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        await asyncio.Event().wait()


async def test_a_call_in_flight_fails_as_soon_as_its_creator_is_abandoned() -> None:
    client = SilentClient()
    creator = AgentExecutionCreator(client, queues=TaskQueues())  # type: ignore[arg-type]
    call = asyncio.create_task(creator.start("aex-1", timeout=10.0))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    creator.abandon()
    with pytest.raises(TemporalUnavailableError, match="the connection to Temporal was lost mid-call"):
        await asyncio.wait_for(call, timeout=2.0)
    assert time.monotonic() - began < 0.5


async def test_a_call_after_abandon_fails_without_touching_temporal() -> None:
    client = SilentClient()
    creator = AgentExecutionCreator(client, queues=TaskQueues())  # type: ignore[arg-type]
    creator.abandon()
    with pytest.raises(TemporalUnavailableError, match="the connection to Temporal was lost"):
        await creator.start("aex-2", timeout=10.0)
    assert client.calls == 0


async def test_cancelling_the_caller_stays_a_cancellation() -> None:
    creator = AgentExecutionCreator(SilentClient(), queues=TaskQueues())  # type: ignore[arg-type]
    call = asyncio.create_task(creator.start("aex-3", timeout=10.0))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
