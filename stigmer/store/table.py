"""What the two execution tables share: read, list, the unfinished ones, start, request ids,
cancellation and deletion. Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from stigmer.errors import FailedPreconditionError, NotFoundError

from .models import Phase
from .paging import Filter, select_page
from .requests import RequestKey, claim
from .sql import Connection, Row, for_update


class _Record(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def cancel_requested_at(self) -> float | None: ...

    @property
    def cancelled_by(self) -> str: ...

    @property
    def cancel_reason(self) -> str: ...


R = TypeVar("R", bound=_Record)

UNFINISHED = (Phase.PENDING.value, Phase.IN_PROGRESS.value)
TERMINAL = tuple(phase.value for phase in Phase if phase.terminal)

#: cancelled_by when Temporal cancelled the workflow and nobody asked stigmer to.
TEMPORAL_CANCELLER = "temporal"
TEMPORAL_CANCEL_REASON = "its Temporal workflow was cancelled"


def cancelled_error(by: str, reason: str) -> str:
    """The error text of a cancelled record."""
    return f"cancelled by {by}" + (f": {reason}" if reason else "")


@dataclass(frozen=True)
class ExecutionTable(Generic[R]):
    #: The SQL table; a constant of ours, never user input (it is formatted into the SQL).
    table: str
    #: For messages: "agent execution", "workflow execution".
    kind: str
    prefix: str
    convert: Callable[[Row], R]

    def get(self, conn: Connection, id: str, *, lock: bool = False) -> R:
        """The record; ``lock`` (before a write that depends on what was read) locks its row."""
        row = conn.execute(
            f"SELECT * FROM {self.table} WHERE id = ?{for_update(conn) if lock else ''}", (id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(self.kind, repr(id))
        return self.convert(row)

    def list_page(
        self, conn: Connection, *, filters: Sequence[Filter] = (), page_size: int, page_token: str
    ) -> tuple[list[R], str]:
        return select_page(
            conn,
            table=self.table,
            prefix=self.prefix,
            filters=filters,
            page_size=page_size,
            page_token=page_token,
            convert=self.convert,
        )

    def delete(self, conn: Connection, id: str) -> bool:
        return conn.execute(f"DELETE FROM {self.table} WHERE id = ?", (id,)).rowcount > 0

    def forget(self, conn: Connection, id: str, *, version: int) -> bool:
        """Remove a record whose start failed -- only if nothing touched it since (still PENDING at
        ``version``): another server may have answered a retry of its create meanwhile (claim)."""
        cursor = conn.execute(
            f"DELETE FROM {self.table} WHERE id = ? AND phase = ? AND version = ?", (id, Phase.PENDING.value, version)
        )
        return cursor.rowcount == 1

    def claim(self, conn: Connection, id: str) -> tuple[R | None, bool]:
        """A retried create is about to be answered with this record: bump its version, so that the
        first attempt's forget() can no longer remove it. (None, False) if it is gone already."""
        cursor = conn.execute(
            f"UPDATE {self.table} SET version = version + 1 WHERE id = ? AND phase IN (?, ?)", (id, *UNFINISHED)
        )
        if cursor.rowcount == 0:
            try:
                return self.get(conn, id), False  # terminal: nothing to protect
            except NotFoundError:
                return None, False
        return self.get(conn, id), True

    def delete_finished(self, conn: Connection, id: str) -> R:
        """Delete a record in a terminal phase and return it as it was.

        NotFoundError if there is none; FailedPreconditionError naming the phase if it is unfinished.
        The DELETE repeats the phase guard, so a record that is not terminal is never removed.
        """
        current = self.get(conn, id, lock=True)
        if not current.phase.terminal:
            raise FailedPreconditionError(
                f"{self.kind} {id} is {current.phase.value}: only a finished execution (COMPLETED, FAILED or "
                "CANCELLED) can be deleted; cancel it first, or delete with force"
            )
        placeholders = ", ".join("?" * len(TERMINAL))
        conn.execute(f"DELETE FROM {self.table} WHERE id = ? AND phase IN ({placeholders})", (id, *TERMINAL))
        return current

    def unfinished(self, conn: Connection) -> list[R]:
        """PENDING or IN_PROGRESS, oldest first (for the reconciler)."""
        rows = conn.execute(f"SELECT * FROM {self.table} WHERE phase IN (?, ?) ORDER BY id ASC", UNFINISHED)
        return [self.convert(row) for row in rows.fetchall()]

    def count_by_phase(self, conn: Connection) -> dict[str, int]:
        """How many records each phase holds (phases that hold none are left out); one statement
        over the (phase, id) index, for the executions gauge."""
        rows = conn.execute(f"SELECT phase, COUNT(*) AS n FROM {self.table} GROUP BY phase").fetchall()
        return {str(row["phase"]): int(row["n"]) for row in rows}

    def mark_started(self, conn: Connection, id: str, *, at: float) -> tuple[R, bool]:
        """PENDING -> IN_PROGRESS (conditional on the phase, so two starters cannot both win);
        (the record, whether this call changed it)."""
        current = self.get(conn, id, lock=True)
        if current.phase is not Phase.PENDING:
            return current, False
        cursor = conn.execute(
            f"UPDATE {self.table} SET phase = ?, started_at = ?, version = version + 1 WHERE id = ? AND phase = ?",
            (Phase.IN_PROGRESS.value, at, id, Phase.PENDING.value),
        )
        return self.get(conn, id), cursor.rowcount == 1

    def find_request(self, conn: Connection, key: RequestKey, *, now: float) -> R | None:
        """The live record made with this request id (same body); see requests.claim."""
        return claim(conn, table=self.table, kind=self.kind, key=key, now=now, convert=self.convert)

    def request_cancel(self, conn: Connection, id: str, *, by: str, reason: str, at: float) -> tuple[R, bool]:
        """Record who asked to cancel and why; the first request is kept, a repeat changes nothing.

        FailedPreconditionError naming the phase if the record is already terminal.
        """
        current = self.get(conn, id, lock=True)
        if current.phase.terminal:
            raise FailedPreconditionError(
                f"{self.kind} {id} is already {current.phase.value}: only a PENDING or IN_PROGRESS execution "
                "can be cancelled"
            )
        if current.cancel_requested_at is not None:
            return current, False
        conn.execute(
            f"UPDATE {self.table} SET cancel_requested_at = ?, cancelled_by = ?, cancel_reason = ?,"
            " version = version + 1 WHERE id = ? AND phase IN (?, ?)",
            (at, by, reason, id, *UNFINISHED),
        )
        return self.get(conn, id), True

    def withdraw_cancel(self, conn: Connection, id: str, *, requested_at: float) -> bool:
        """Undo request_cancel (the cancel never reached Temporal), if the record is still as it left it."""
        cursor = conn.execute(
            f"UPDATE {self.table} SET cancel_requested_at = NULL, cancelled_by = '', cancel_reason = '',"
            " version = version + 1 WHERE id = ? AND cancel_requested_at = ? AND phase IN (?, ?)",
            (id, requested_at, *UNFINISHED),
        )
        return cursor.rowcount == 1

    def finish_cancelled(
        self, conn: Connection, current: R, *, by: str, reason: str, error: str, at: float, **more: object
    ) -> tuple[R, bool]:
        """An unfinished record -> CANCELLED, keeping a recorded request's time; ``more`` sets other
        columns (fixed names of ours). A terminal record is returned unchanged."""
        if current.phase.terminal:
            return current, False
        sets = "".join(f", {column} = ?" for column in more)
        cursor = conn.execute(
            f"UPDATE {self.table} SET phase = ?, error = ?, completed_at = ?,"
            " cancel_requested_at = COALESCE(cancel_requested_at, ?), cancelled_by = ?, cancel_reason = ?"
            f"{sets}, version = version + 1 WHERE id = ? AND phase IN (?, ?)",
            (Phase.CANCELLED.value, error, at, at, by, reason, *more.values(), current.id, *UNFINISHED),
        )
        return self.get(conn, current.id), cursor.rowcount == 1
