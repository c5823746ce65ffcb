"""What the agent and workflow execution controllers share: the creator slot, the start that
removes its record on failure, and reading, listing and following records."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

from stigmer.errors import NotFoundError
from stigmer.store import Phase, Store

from . import validation as check
from .availability import require, start_or_forget
from .ports import Availability, Starter
from .watch import DEFAULT_RECHECK_INTERVAL, follow


class _Record(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Record)
C = TypeVar("C", bound=Starter)


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
    ) -> None:
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        self._store = store
        self._availability = availability
        self._start_timeout = start_timeout
        self._recheck = watch_recheck_interval
        # Set and cleared by the Temporal layer from the event loop; a plain attribute read is
        # all a request needs (it keeps its own reference for the rest of the call).
        self._creator: C | None = None

    def set_creator(self, creator: C | None) -> None:
        self._creator = creator

    @property
    def creator(self) -> C | None:
        return self._creator

    # -- what subclasses provide ------------------------------------------------------------

    def _fetch(self, id: str) -> R:
        raise NotImplementedError

    def _page(self, *, phase: Phase | None, page_size: int, page_token: str) -> tuple[builtins.list[R], str]:
        raise NotImplementedError

    def _delete(self, id: str) -> bool:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------

    async def _require_creator(self) -> C:
        return await require(lambda: self._creator, self._availability, what=f"{self.KIND} creator")

    async def _start(self, creator: C, record: R) -> R:
        """Start the record's workflow; on failure the record is removed before the error surfaces."""
        await start_or_forget(
            creator, id=record.id, timeout=self._start_timeout, delete=self._delete, availability=self._availability
        )
        return self._read(record.id)

    def get(self, id: str) -> R:
        return self._read(check.check_id(self.PREFIX, id))

    def list(self, *, phase: str = "", page_size: int = 0, page_token: str = "") -> tuple[builtins.list[R], str]:
        wanted = check.parse_phase(phase)
        size = check.check_page_size(page_size)
        return check.list_page(lambda: self._page(phase=wanted, page_size=size, page_token=page_token))

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
