"""One reconciler among many API processes: the holder of the store's lease reconciles, on every
CONNECTED of its own and every ``period`` seconds; the others check now and then whether the lease
has become free (its holder died) and take over. Starts are idempotent (the workflow id is the
execution id), so even an overlap at a hand-over could not start a workflow twice.

With SQLite (one process) the lease is always held: this is the plain "reconcile on CONNECTED".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from loguru import logger

from .ports import Session
from .reconciler import Reconciler, ReconcileReport

__all__ = ["LEASE_KEY", "LeadingReconciler"]

#: The store lease the reconciler holds ("reconcil" in ASCII, as a bigint).
LEASE_KEY = 0x7265636F_6E63696C


class Lease(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class LeadingReconciler:
    """``on_connected`` for the connection's hook; ``run()`` for the periodic pass (a task)."""

    def __init__(
        self,
        reconciler: Reconciler,
        lease: Lease,
        *,
        session: Callable[[], Session | None],
        period: float = 60.0,
        check_every: float = 5.0,
    ) -> None:
        if period <= 0 or check_every <= 0:
            raise ValueError("period and check_every must be positive")
        self._reconciler = reconciler
        self._lease = lease
        self._session = session
        self._period = period
        self._check_every = check_every
        self._leading = False

    @property
    def leading(self) -> bool:
        return self._leading

    async def _holds(self) -> bool:
        held = await asyncio.to_thread(self._lease.acquire)
        if held != self._leading:
            self._leading = held
            logger.info("This server {} the reconciler", "now runs" if held else "no longer runs")
        return held

    async def on_connected(self, session: Session) -> ReconcileReport | None:
        """On every entry to CONNECTED: reconcile if this process leads."""
        if not await self._holds():
            logger.debug("Reconciliation left to the server holding the lease")
            return None
        return await self._reconciler.reconcile(session)

    async def run(self) -> None:
        """Forever: take the lease when it is free (reconcile at once then), and reconcile every period."""
        since = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self._check_every)
                was_leading = self._leading
                if not await self._holds():
                    continue
                session = self._session()
                if session is None:
                    continue  # not connected: the next CONNECTED reconciles
                if not was_leading or loop.time() - since >= self._period:
                    since = loop.time()
                    await self._reconciler.reconcile(session)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._lease.release)
