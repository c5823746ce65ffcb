"""The reconciler: on every entry to CONNECTED, give each unfinished execution a live workflow.

"No zombies": an execution whose id a client saw must reach a terminal phase. While Temporal
was away, workflows may have been lost (a dev server in memory forgets everything on restart)
or may have ended without recording their result. For each PENDING or IN_PROGRESS execution
the reconciler asks Temporal about its workflow and then:

- RUNNING: nothing to do, the workflow will record the result;
- COMPLETED, but the record is still unfinished: mark it FAILED (the result was never recorded);
- FAILED / TERMINATED / TIMED_OUT / CANCELED: mark it FAILED with that reason;
- NOT FOUND and PENDING: start it again (starts are idempotent: same workflow id, USE_EXISTING);
- NOT FOUND and IN_PROGRESS: it had started and its progress is gone: mark it FAILED.

An execution somebody asked to cancel is never started again: RUNNING, it is asked to cancel
once more (the request may not have reached Temporal before it went away); in any other case
there is nothing left to stop, and it is marked CANCELLED.

Agent executions created by a workflow execution (``parent_id``) belong to their parent's
workflow and are left alone while the parent is unfinished; once the parent is terminal, an
unfinished step is checked like any other, but never started again.

If Temporal becomes unavailable mid-way the pass stops; the next CONNECTED runs it again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from loguru import logger

from stigmer.errors import NotFoundError, StoreError, TemporalUnavailableError
from stigmer.store import AGENT_EXECUTION, WORKFLOW_EXECUTION, AgentExecution, Phase, Store, WorkflowExecution

from .ports import Availability, RemoteStatus, Session, Starter

LOST_REASON = "Temporal lost this execution's workflow (was Temporal restarted without persistence?)"
NO_RESULT_REASON = "workflow completed without recording a result"

_ENDED_BADLY = (RemoteStatus.FAILED, RemoteStatus.TERMINATED, RemoteStatus.TIMED_OUT, RemoteStatus.CANCELED)

Record = AgentExecution | WorkflowExecution


@dataclass
class ReconcileReport:
    checked: int = 0  # unfinished executions looked at (steps left to their parent excluded)
    running: int = 0  # their workflow is alive
    restarted: int = 0  # PENDING and unknown to Temporal: started again
    failed: int = 0  # marked FAILED with a reason
    cancelled: int = 0  # a cancel had been requested: marked CANCELLED, or asked again while running
    finished: int = 0  # reached a terminal phase by themselves while we looked
    left_to_parent: int = 0  # steps of an unfinished workflow execution
    errors: int = 0  # could not be settled this time (logged); retried on the next pass
    interrupted: bool = False  # Temporal went away mid-pass; the rest waits for the next CONNECTED
    superseded: bool = False  # not run: a newer connection asked for a pass while this one waited

    def summary(self) -> str:
        text = f"{self.checked} checked, {self.running} running, {self.restarted} restarted, {self.failed} failed"
        text += f", {self.cancelled} cancelled" if self.cancelled else ""
        return text + (" (interrupted: Temporal unavailable)" if self.interrupted else "")


@dataclass(frozen=True)
class _Item:
    """One unfinished execution and how to act on it, whatever its kind."""

    id: str
    workflow_id: str
    read: Callable[[], Record]
    fail: Callable[..., Record]  # fail(error=reason)
    cancel: Callable[[], Record]  # record CANCELLED (by whoever asked)
    canceller: Starter  # asks Temporal to cancel its workflow
    starter: Starter | None  # None: must not be started again (a step whose parent ended)
    not_startable_reason: str = ""


class _Interrupted(Exception):
    """Temporal is unavailable: stop this pass."""


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        describe_timeout: float = 5.0,
        start_timeout: float = 10.0,
        availability: Availability | None = None,
    ) -> None:
        """`availability`, if given, hears when Temporal fails mid-pass: the connection then reconnects
        (and so runs a new pass) at once, instead of leaving the rest until an unrelated reconnect."""
        if describe_timeout <= 0 or start_timeout <= 0:
            raise ValueError("describe_timeout and start_timeout must be positive")
        self._store = store
        self._describe_timeout = describe_timeout
        self._start_timeout = start_timeout
        self._availability = availability
        # Passes never overlap: a quick reconnect waits for the previous pass, then re-checks.
        self._lock = asyncio.Lock()
        self._newest: Session | None = None

    async def reconcile(self, session: Session) -> ReconcileReport:
        """One pass over every unfinished execution, through ``session`` (the newly connected one)."""
        # Only the newest waiting pass runs: under a flapping connection every reconnect asked for
        # one, and the chaos soak saw eleven passes queue up and then run back to back, each
        # through an older client, after the faults had ended.
        self._newest = session
        async with self._lock:
            if session is not self._newest:
                logger.debug("Reconciliation skipped: a newer connection runs it")
                return ReconcileReport(superseded=True)
            report = ReconcileReport()
            try:
                for item in self._items(session, report):
                    report.checked += 1
                    try:
                        await self._settle(item, session, report)
                    except _Interrupted:
                        raise
                    except Exception as err:  # one odd record must not block the others
                        report.errors += 1
                        logger.opt(exception=err).error("Reconciler could not check {}: {}", item.id, err)
            except StoreError as err:  # listing the unfinished failed (the database is away)
                report.interrupted = True
                logger.warning("Reconciliation stopped, the store is unavailable ({}); retried on the next pass", err)
            except _Interrupted as stop:
                report.interrupted = True
                logger.warning(
                    "Reconciliation stopped, Temporal is unavailable ({}); the rest waits for the next connection", stop
                )
                if self._availability is not None:
                    self._availability.report_unavailable(f"reconciler: {stop}", client=session.client)
            logger.info(
                "Reconciled unfinished executions: {}",
                report.summary(),
                finished=report.finished,
                left_to_parent=report.left_to_parent,
                errors=report.errors,
            )
            return report

    # -- what to look at ----------------------------------------------------------------------

    def _items(self, session: Session, report: ReconcileReport) -> Iterator[_Item]:
        """Workflow executions first, so that their steps see the parents' settled phase."""
        store = self._store
        wex_starter = session.workflow_executions
        aex_starter = session.agent_executions
        for wex in store.unfinished_workflow_executions():
            yield _Item(
                id=wex.id,
                workflow_id=wex.temporal_workflow_id,
                read=functools.partial(store.get_workflow_execution, wex.id),
                fail=functools.partial(store.fail_workflow_execution, wex.id),
                cancel=functools.partial(store.cancel, WORKFLOW_EXECUTION, wex.id),
                canceller=wex_starter,
                starter=wex_starter,
            )
        for aex in store.unfinished_agent_executions():
            starter: Starter | None = aex_starter
            reason = ""
            if aex.parent_id:
                parent_phase = self._parent_phase(aex.parent_id)
                if parent_phase is not None and not parent_phase.terminal:
                    report.left_to_parent += 1
                    continue
                # Its parent is over: nobody is waiting for this step, so it is not run again.
                starter = None
                ended = f"ended ({parent_phase.value})" if parent_phase is not None else "no longer exists"
                reason = f"its workflow execution {aex.parent_id} {ended} before this step ran"
            yield _Item(
                id=aex.id,
                workflow_id=aex.workflow_id,
                read=functools.partial(store.get_agent_execution, aex.id),
                fail=functools.partial(store.fail_agent_execution, aex.id),
                cancel=functools.partial(store.cancel, AGENT_EXECUTION, aex.id),
                canceller=aex_starter,
                starter=starter,
                not_startable_reason=reason,
            )

    def _parent_phase(self, parent_id: str) -> Phase | None:
        try:
            return self._store.get_workflow_execution(parent_id).phase
        except NotFoundError:
            return None

    # -- deciding -----------------------------------------------------------------------------

    async def _settle(self, item: _Item, session: Session, report: ReconcileReport) -> None:
        if self._finished(item):
            report.finished += 1
            return
        try:
            status = await session.describe(item.workflow_id, timeout=self._describe_timeout)
        except TemporalUnavailableError as err:
            raise _Interrupted(str(err)) from err
        try:
            current = item.read()  # again: it may have finished, or been deleted, while Temporal answered
        except NotFoundError:
            report.finished += 1
            return
        if current.phase.terminal:
            report.finished += 1
        elif current.cancel_requested_at is not None:
            await self._cancel(item, running=status is RemoteStatus.RUNNING, report=report)
        elif status is RemoteStatus.RUNNING:
            report.running += 1
        elif status is RemoteStatus.COMPLETED:
            # It may have recorded its result just now, after our listing: read again first.
            self._fail(item, NO_RESULT_REASON, report)
        elif status in _ENDED_BADLY:
            assert status is not None
            self._fail(item, f"its Temporal workflow ended {status.name} without recording a result", report)
        elif status is None:
            await self._lost(item, report)
        else:  # a status this code does not know: leave it for a person, loudly
            report.errors += 1
            logger.error("Reconciler left {} alone: unexpected workflow status {}", item.id, status)

    async def _lost(self, item: _Item, report: ReconcileReport) -> None:
        try:
            record = item.read()
        except NotFoundError:  # deleted meanwhile: nothing to settle
            report.finished += 1
            return
        if record.phase is Phase.PENDING and item.starter is not None:
            try:
                await item.starter.start(item.id, timeout=self._start_timeout)
            except TemporalUnavailableError as err:
                raise _Interrupted(str(err)) from err
            report.restarted += 1
            logger.info("Reconciler started the workflow of {} again (Temporal did not know it)", item.id)
        elif record.phase is Phase.PENDING:
            self._fail(item, item.not_startable_reason, report)
        else:
            self._fail(item, LOST_REASON, report)

    async def _cancel(self, item: _Item, *, running: bool, report: ReconcileReport) -> None:
        report.cancelled += 1
        if running:
            try:
                still_running = await item.canceller.cancel(item.id, timeout=self._start_timeout)
            except TemporalUnavailableError as err:
                raise _Interrupted(str(err)) from err
            if still_running:
                logger.info("Reconciler asked Temporal again to cancel {}", item.id)
                return
        try:
            record = item.cancel()
        except NotFoundError:  # deleted meanwhile
            return
        logger.info("Reconciler marked {} {}: its cancel was requested and nothing runs it", item.id, record.phase)

    def _finished(self, item: _Item) -> bool:
        try:
            return item.read().phase.terminal
        except NotFoundError:  # removed after a failed start: nothing to settle
            return True

    def _fail(self, item: _Item, reason: str, report: ReconcileReport) -> None:
        if self._finished(item):
            report.finished += 1
            return
        try:
            record = item.fail(error=reason)
        except NotFoundError:  # deleted between the check and the write
            report.finished += 1
            return
        if record.phase is Phase.FAILED and record.error == reason:
            report.failed += 1
            logger.warning("Reconciler marked {} FAILED: {}", item.id, reason)
        else:  # it finished by itself between the read and the write; the store kept its result
            report.finished += 1
