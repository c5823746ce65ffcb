"""An event loop on a thread of its own, for the Temporal workers.

The SDK does part of a worker's work on the event loop that runs it: it creates every new
workflow instance there (in the sandbox), decodes activations and runs async activities. On the
API's loop that work sits in front of every request that arrives meanwhile (a create waited
~10 ms behind it under load, measured by bench/happy_path.py). On a loop of its own the workers
share only the GIL with the API.

Nothing here knows about Temporal: `run` executes a coroutine on the thread's loop and hands its
outcome back to the caller's loop (cancelling the caller cancels it there too), `call_soon`
posts a callback to it, `close` stops the loop, bounded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from loguru import logger

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            raise RuntimeError(f"{self._name}: not running")
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread and its loop (idempotent); returns once the loop runs."""
        if self.running:
            return
        loop = asyncio.new_event_loop()
        started = threading.Event()
        self._loop = loop
        self._thread = threading.Thread(target=self._main, args=(loop, started), name=self._name, daemon=True)
        self._thread.start()
        started.wait()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread's loop and return (or raise) its outcome on the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Cancel what still runs there, stop the loop and join the thread, within ``timeout``."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, timeout)
        if thread.is_alive():
            logger.warning("{} did not stop within {:g}s; leaving it (a daemon thread)", self._name, timeout)

    def _main(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            try:
                _finish(loop)
            finally:
                asyncio.set_event_loop(None)
                loop.close()


def _finish(loop: asyncio.AbstractEventLoop, timeout: float = 2.0) -> None:
    """What asyncio.run does on the way out: cancel leftovers, close async generators and the executor."""
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.wait(leftovers, timeout=timeout))
    loop.run_until_complete(loop.shutdown_asyncgens())
    # Bounded: a thread stuck in a blocking call must not hold up the process' exit.
    waiting = loop.create_task(loop.shutdown_default_executor())
    loop.run_until_complete(asyncio.wait([waiting], timeout=timeout))
    if not waiting.done():
        waiting.cancel()
        loop.run_until_complete(asyncio.wait([waiting], timeout=0.1))
