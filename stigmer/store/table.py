"""What the two execution tables share: read one, a page, delete, the unfinished ones, and start one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from stigmer.errors import NotFoundError

from .models import Phase
from .paging import select_page


class _Record(Protocol):
    @property
    def phase(self) -> Phase: ...


R = TypeVar("R", bound=_Record)

UNFINISHED = (Phase.PENDING.value, Phase.IN_PROGRESS.value)


@dataclass(frozen=True)
class ExecutionTable(Generic[R]):
    #: The SQL table; a constant of ours, never user input (it is formatted into the SQL).
    table: str
    #: For messages: "agent execution", "workflow execution".
    kind: str
    prefix: str
    convert: Callable[[sqlite3.Row], R]

    def get(self, conn: sqlite3.Connection, id: str) -> R:
        row = conn.execute(f"SELECT * FROM {self.table} WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise NotFoundError(self.kind, repr(id))
        return self.convert(row)

    def list_page(
        self, conn: sqlite3.Connection, *, phase: Phase | None, page_size: int, page_token: str
    ) -> tuple[list[R], str]:
        return select_page(
            conn,
            table=self.table,
            prefix=self.prefix,
            phase=phase,
            page_size=page_size,
            page_token=page_token,
            convert=self.convert,
        )

    def delete(self, conn: sqlite3.Connection, id: str) -> bool:
        return conn.execute(f"DELETE FROM {self.table} WHERE id = ?", (id,)).rowcount > 0

    def unfinished(self, conn: sqlite3.Connection) -> list[R]:
        """PENDING or IN_PROGRESS, oldest first (for the reconciler)."""
        rows = conn.execute(f"SELECT * FROM {self.table} WHERE phase IN (?, ?) ORDER BY id ASC", UNFINISHED)
        return [self.convert(row) for row in rows.fetchall()]

    def mark_started(self, conn: sqlite3.Connection, id: str, *, at: float) -> tuple[R, bool]:
        """PENDING -> IN_PROGRESS (conditional on the phase, so two starters cannot both win);
        (the record, whether this call changed it)."""
        current = self.get(conn, id)
        if current.phase is not Phase.PENDING:
            return current, False
        cursor = conn.execute(
            f"UPDATE {self.table} SET phase = ?, started_at = ?, version = version + 1 WHERE id = ? AND phase = ?",
            (Phase.IN_PROGRESS.value, at, id, Phase.PENDING.value),
        )
        return self.get(conn, id), cursor.rowcount == 1
