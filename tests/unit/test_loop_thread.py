"""LoopThread: a coroutine run there reports back here; cancelling here cancels it there; close is bounded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stigmer.temporal.loop_thread import LoopThread
from stigmer.testing.eventually import eventually


async def forever(started: threading.Event, cancelled: threading.Event) -> None:
    """Runs until cancelled; says so through thread-safe events."""
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.set()
        raise


@pytest.fixture
async def there():
    thread = LoopThread("test-loop")
    thread.start()
    yield thread
    await thread.close()


async def test_runs_on_its_own_thread_and_loop(there):
    async def where() -> tuple[int, asyncio.AbstractEventLoop]:
        return threading.get_ident(), asyncio.get_running_loop()

    ident, loop = await there.run(where())
    assert ident != threading.get_ident() and loop is not asyncio.get_running_loop() and loop is there.loop


async def test_errors_come_back_to_the_caller(there):
    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await there.run(fail())


async def test_cancelling_the_caller_cancels_the_coroutine_there(there):
    started, cancelled = threading.Event(), threading.Event()
    caller = asyncio.create_task(there.run(forever(started, cancelled)))
    await eventually(started.is_set, timeout=5, what="the coroutine to start there")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await eventually(cancelled.is_set, timeout=5, what="the cancellation to reach it")


async def test_close_cancels_leftovers_and_joins_the_thread():
    thread = LoopThread("test-loop")
    thread.start()
    started, cancelled = threading.Event(), threading.Event()
    thread.call_soon(lambda: asyncio.ensure_future(forever(started, cancelled)))
    await eventually(started.is_set, timeout=5, what="a task there")
    await thread.close(timeout=5)
    assert not thread.running and cancelled.is_set()
    with pytest.raises(RuntimeError, match="not running"):
        thread.loop  # noqa: B018
    await thread.close()  # twice is fine
