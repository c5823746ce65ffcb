"""Deterministic waiting for tests whose fakes do no real I/O: spin the loop, never sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def settle(spins: int = 100) -> None:
    """Let every ready task run until the loop is idle."""
    for _ in range(spins):
        await asyncio.sleep(0)


async def spin_until(condition: Callable[[], bool], *, spins: int = 1000, what: str = "condition") -> None:
    """Yield to the loop until ``condition()`` holds; fail (instead of hanging) after ``spins`` turns."""
    for _ in range(spins):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} did not happen within {spins} loop turns")
