"""What the agent and workflow execution controllers share: the creator slot, creates that are
safe to retry, cancel, delete, and reading, listing and following records.

Create with a request id (AIP-155): the store finds the record an earlier attempt made with that
id, in the same transaction as the insert, so two attempts never make two records; the Temporal
workflow id is derived from the execution id, so they never start two workflows either. A retry
that arrives while the first attempt's start is still in flight waits for that start (one
in-process future per execution id) instead of racing it.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

from loguru import logger

from stigmer.errors import FailedPreconditionError, NotFoundError, TemporalUnavailableError
from stigmer.store import DEFAULT_REQUEST_ID_TTL, Phase, RequestKey, Store, body_digest

from . import validation as check
from .availability import require, start_or_forget, unavailable
from .ports import Availability, Starter
from .watch import DEFAULT_RECHECK_INTERVAL, follow

#: How long Delete with force waits for a cancelled execution to stop.
FORCE_DELETE_WAIT = 30.0
#: Ids whose workflow this process started, remembered so a retry need not start it again.
STARTED_MEMORY = 4096


class _Record(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def version(self) -> int: ...

    @property
    def cancel_requested_at(self) -> float | None: ...


R = TypeVar("R", bound=_Record)
C = TypeVar("C", bound=Starter)
#: admit(request) -> (record, created): the store's insert-or-find of one create.
Admit = Callable[[RequestKey | None], tuple[R, bool]]


class ExecutionController(Generic[R, C]):
    """Subclasses name their record kind and the store calls that read it."""

    KIND: str  # "agent execution"
    PREFIX: str  # "aex"
    LISTENER_KIND: str  # the store's change-notification kind

    def __init__(
        self,
        *,
        store: Store,
        availability: Availability,
        start_timeout: float = 10.0,
        watch_recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
        request_id_ttl: float = DEFAULT_REQUEST_ID_TTL,
        on_fast_fail: Callable[[str], None] | None = None,
    ) -> None:
        """``on_fast_fail(kind)`` hears of each create refused because Temporal is not connected."""
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        if request_id_ttl <= 0:
            raise ValueError(f"request_id_ttl must be positive, got {request_id_ttl}")
        self._store = store
        self._availability = availability
        self._start_timeout = start_timeout
        self._recheck = watch_recheck_interval
        self._request_ttl = request_id_ttl
        self._on_fast_fail = on_fast_fail
        # Set and cleared by the Temporal layer from the event loop; a plain attribute read is
        # all a request needs (it keeps its own reference for the rest of the call).
        self._creator: C | None = None
        self._starting: dict[str, asyncio.Future[None]] = {}
        self._started: collections.OrderedDict[str, None] = collections.OrderedDict()

    def set_creator(self, creator: C | None) -> None:
        self._creator = creator

    @property
    def creator(self) -> C | None:
        return self._creator

    # -- what subclasses provide ------------------------------------------------------------

    def _fetch(self, id: str) -> R:
        raise NotImplementedError

    def _find_request(self, key: RequestKey) -> R | None:
        found: R | None = self._call(lambda: self._store.find_request(self.LISTENER_KIND, key))
        return found

    # -- create -------------------------------------------------------------------------------

    def _request_key(self, request_id: str, body: object) -> RequestKey | None:
        return RequestKey(request_id, body_digest(body), self._request_ttl) if request_id else None

    async def _create(self, key: RequestKey | None, admit: Admit[R]) -> R:
        """Store (or find, with a request key) the record and start its workflow."""
        if key is not None:
            # An acknowledged create is answered again even while Temporal is away.
            found = self._find_request(key)
            if found is not None:
                return await self._replay(found, key, admit)
        creator = await self._require_creator(creating=True)
        record, created = admit(key)
        if not created:  # a concurrent attempt with the same request id stored it first
            return await self._replay(record, key, admit)
        return await self._start(creator, record)

    async def _replay(self, record: R, key: RequestKey | None, admit: Admit[R]) -> R:
        """A retried create: the record an earlier attempt made, with its workflow started."""
        inflight = self._starting.get(record.id)
        if inflight is not None:
            await asyncio.shield(inflight)  # the first attempt's error, if its start failed
        elif record.phase is Phase.PENDING and record.id not in self._started:
            # The first attempt may still be starting it in another process, and remove it if that
            # fails: claim it first (its removal then leaves it alone), or create it afresh if it
            # is gone already. Starting again is a no-op if its start had reached Temporal.
            if self._store.claim(self.LISTENER_KIND, record.id) is None:
                return await self._create(key, admit)
            creator = await self._require_creator(creating=True)
            try:
                await creator.start(record.id, timeout=self._start_timeout)
            except TemporalUnavailableError as err:
                self._availability.report_unavailable(err, client=creator.client)
                raise unavailable(self._availability, cause=str(err)) from err
        return self._read(record.id)

    async def _require_creator(self, *, creating: bool = False) -> C:
        refused = self._fast_failed if creating and self._on_fast_fail is not None else None
        return await require(lambda: self._creator, self._availability, what=f"{self.KIND} creator", refused=refused)

    def _fast_failed(self) -> None:
        if self._on_fast_fail is not None:
            self._on_fast_fail(self.LISTENER_KIND)

    async def _start(self, creator: C, record: R) -> R:
        """Start the record's workflow; on failure the record is removed before the error surfaces
        (unless a retry answered by another server claimed it meanwhile: see _replay)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting[record.id] = done
        version = record.version

        def forget(id: str) -> bool:
            return self._store.forget(self.LISTENER_KIND, id, version=version)

        try:
            await start_or_forget(
                creator,
                id=record.id,
                timeout=self._start_timeout,
                delete=forget,
                availability=self._availability,
            )
        except BaseException as err:
            # A waiting retry gets an answer it can give its own caller: the first attempt's error,
            # or UNAVAILABLE if that caller went away (a CancelledError would cancel the retry too).
            failure = err if isinstance(err, Exception) else unavailable(self._availability, cause="create abandoned")
            done.set_exception(failure)
            done.exception()  # retrieved: nobody may be waiting for it
            raise
        else:
            done.set_result(None)
            self._started[record.id] = None
            if len(self._started) > STARTED_MEMORY:
                self._started.popitem(last=False)
        finally:
            self._starting.pop(record.id, None)
        return self._read(record.id)

    # -- cancel and delete --------------------------------------------------------------------

    async def cancel(self, id: str, *, reason: str = "", requested_by: str = "") -> R:
        """Ask the execution to stop; returns it with the request recorded (see the API's Cancel)."""
        check.check_id(self.PREFIX, id)
        why, who = check.check_cancel_request(reason, requested_by)
        await self._settle_start(id)

        def request() -> R:
            at = time.time()
            asked: R = self._call(lambda: self._store.request_cancel(self.LISTENER_KIND, id, by=who, reason=why, at=at))
            return asked

        phase = self._read(id).phase
        if phase.terminal or phase is Phase.PENDING:
            request()  # FAILED_PRECONDITION naming the phase, for a terminal one
            # Never run by a worker: nothing to stop in Temporal. A workflow that starts it later
            # finds it CANCELLED and ends at once (PENDING only: a worker may start it meanwhile).
            local: R = self._call(lambda: self._store.cancel(self.LISTENER_KIND, id, pending_only=True))
            if local.phase.terminal:
                logger.info("Cancelled {} before any worker ran it", id, by=who)
                return local
        # Running: Temporal must stop it. Without a connection nothing is recorded (UNAVAILABLE
        # then means "nothing changed"); with one, the request is recorded first (the workflow
        # reads who and why from it) and then sent.
        creator = await self._require_creator()
        request()
        try:
            running = await creator.cancel(id, timeout=self._start_timeout)
        except TemporalUnavailableError as err:
            # It may have reached Temporal or not: the request stays recorded, and the reconciler
            # sends it again on the next connection (it does so for every running workflow with one).
            self._availability.report_unavailable(err, client=creator.client)
            raise unavailable(self._availability, cause=str(err)) from err
        if not running:  # Temporal has no live workflow for it: nothing can record an outcome
            done: R = self._call(lambda: self._store.cancel(self.LISTENER_KIND, id))
            logger.info("Cancelled {}: Temporal had no running workflow for it", id, by=who)
            return done
        logger.info("Requested cancellation of {}", id, by=who, reason=why)
        return self._read(id)

    async def delete(self, id: str, *, force: bool = False) -> R:
        """Delete a finished execution and return it as it was; ``force`` cancels it first and waits."""
        check.check_id(self.PREFIX, id)
        await self._settle_start(id)
        current = self._read(id)
        if force and not current.phase.terminal:
            if current.cancel_requested_at is None:
                with contextlib.suppress(FailedPreconditionError):  # it finished by itself meanwhile
                    await self.cancel(id, reason="deleted with force", requested_by="")
            await self._wait_finished(id)
        deleted: R = self._call(lambda: self._store.delete_finished(self.LISTENER_KIND, id))
        return deleted

    async def _settle_start(self, id: str) -> None:
        """Let a create still starting this record finish first (cancel or delete of a record mid-create)."""
        inflight = self._starting.get(id)
        if inflight is not None:
            with contextlib.suppress(Exception):  # its create failed: the record is gone, NOT_FOUND follows
                await asyncio.shield(inflight)

    async def _wait_finished(self, id: str) -> None:
        try:
            async with asyncio.timeout(FORCE_DELETE_WAIT):
                async for record in self.watch(id):
                    if record.phase.terminal:
                        return
        except TimeoutError:
            raise FailedPreconditionError(
                f"{self.KIND} {id} was asked to cancel but has not stopped within {FORCE_DELETE_WAIT:g} s; "
                "delete it again later"
            ) from None

    def _call(self, call: Callable[[], Any]) -> Any:
        """A store call about this kind; its NotFoundError names the record as the API shows it."""
        try:
            return call()
        except NotFoundError as exc:
            raise NotFoundError(self.KIND, exc.id.strip("'")) from None

    # -- read ---------------------------------------------------------------------------------

    def get(self, id: str) -> R:
        return self._read(check.check_id(self.PREFIX, id))

    def list_checked(
        self, call: Callable[[int], tuple[builtins.list[R], str]], *, page_size: int
    ) -> tuple[builtins.list[R], str]:
        size = check.check_page_size(page_size)
        return check.list_page(lambda: call(size))

    def watch(self, id: str) -> AsyncIterator[R]:
        """The record now, then every change; ends after a terminal phase. NotFoundError raised here, at once."""
        self.get(id)
        read: Callable[[str], Any] = self._read
        return follow(self._store, kind=self.LISTENER_KIND, id=id, read=read, recheck_interval=self._recheck)

    def _read(self, id: str) -> R:
        try:
            return self._fetch(id)
        except NotFoundError:
            raise NotFoundError(self.KIND, id) from None
