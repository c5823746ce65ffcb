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
from .reconciler import ReconcileReport

__all__ = ["LEASE_KEY", "LeadingReconciler"]

#: The store lease the reconciler holds ("reconcil" in ASCII, as a bigint).
LEASE_KEY = 0x7265636F_6E63696C


class Reconciling(Protocol):
    """What runs a pass: the Reconciler, or something wrapping it (counting its passes, say)."""

    async def reconcile(self, session: Session) -> ReconcileReport: ...


class Lease(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class LeadingReconciler:
    """``on_connected`` for the connection's hook; ``run()`` for the periodic pass (a task)."""

    def __init__(
        self,
        reconciler: Reconciling,
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
        """Forever: take the lease when it is free (reconcile at once then), and reconcile every period.

        Only a connected server leads: one cut off from Temporal lets go, so that a connected one
        takes over. A failed pass (the database away, say) is logged and tried again later; it
        never ends this loop.
        """
        since = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self._check_every)
                try:
                    session = self._session()
                    if session is None:  # not connected: lead no longer (the next CONNECTED asks again)
                        if self._leading:
                            await asyncio.to_thread(self._lease.release)
                            self._leading = False
                            logger.info("This server no longer runs the reconciler (not connected to Temporal)")
                        continue
                    was_leading = self._leading
                    if not await self._holds():
                        continue
                    if not was_leading or loop.time() - since >= self._period:
                        since = loop.time()
                        await self._reconciler.reconcile(session)
                except Exception as err:  # the next round tries again
                    logger.warning("Periodic reconciliation failed, will retry: {}", err)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._lease.release)
