"""Keyset pagination, newest first, with filters.

Ids are ULIDs, so "newest first" is "id descending", and a page can continue strictly after the
last id it returned. That stays correct while rows are inserted or deleted between pages (unlike
OFFSET). The token is that id and a digest of the filters it was issued for, base64-wrapped so
callers treat it as opaque: a token replayed with other filters is refused, not misread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

from .ids import is_valid_id
from .models import Phase
from .sql import Connection, Row

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FILTER_CLAUSES",
    "MAX_PAGE_SIZE",
    "Filter",
    "decode_page_token",
    "encode_page_token",
    "select_page",
]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_TOKEN_VERSION = "v2:"
_MAX_TOKEN_LENGTH = 200
# Table names cannot be bound as parameters; only these fixed names are ever interpolated.
_PAGED_TABLES = frozenset({"agent_executions", "workflows", "workflow_executions"})
#: The only WHERE clauses a filter may use (values are always bound parameters).
FILTER_CLAUSES = frozenset(
    {"phase = ?", "agent = ?", "parent_id = ?", "workflow_id = ?", "workflow_name = ?", "created_at > ?"}
)
#: (clause from FILTER_CLAUSES, value)
Filter = tuple[str, object]


def _filters_digest(filters: Sequence[Filter]) -> str:
    text = repr(sorted((clause, repr(value)) for clause, value in filters))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def normalize_page_size(page_size: int) -> int:
    """0 means "the default" (a proto field left unset); above the maximum is clamped (AIP-158)."""
    if page_size < 0:
        raise ValueError(f"page_size must be 0 (default {DEFAULT_PAGE_SIZE}) or positive, got {page_size}")
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def encode_page_token(last_id: str, filters: Sequence[Filter] = ()) -> str:
    """Opaque to callers: the last id of the page (the next starts strictly after it) and the filters."""
    raw = f"{_TOKEN_VERSION}{_filters_digest(filters)}:{last_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_page_token(token: str, *, prefix: str, filters: Sequence[Filter] = ()) -> str | None:
    """Return the id to continue after, or None for the first page; ValueError if malformed or if
    it was issued for other filters."""
    if not token:
        return None
    problem = f"page_token is malformed (pass the next_page_token of a previous {prefix} listing or '')"
    if len(token) > _MAX_TOKEN_LENGTH:
        raise ValueError(problem)
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(problem) from exc
    digest, _, last_id = text.removeprefix(_TOKEN_VERSION).partition(":")
    if not text.startswith(_TOKEN_VERSION) or not is_valid_id(prefix, last_id):
        raise ValueError(problem)
    if digest != _filters_digest(filters):
        raise ValueError(
            "page_token was issued for a listing with other filters; send the same filters, or '' to start over"
        )
    return last_id


def select_page(
    conn: Connection,
    *,
    table: str,
    prefix: str,
    page_size: int,
    page_token: str,
    convert: Callable[[Row], T],
    filters: Sequence[Filter] = (),
) -> tuple[list[T], str]:
    """One page of ``table`` (newest first, only rows matching every filter) and the token for the
    next page ("" at the end)."""
    if table not in _PAGED_TABLES:
        raise ValueError(f"not a paged table: {table!r}")
    unknown = [clause for clause, _ in filters if clause not in FILTER_CLAUSES]
    if unknown:
        raise ValueError(f"not a filter clause: {unknown}")
    size = normalize_page_size(page_size)
    after = decode_page_token(page_token, prefix=prefix, filters=filters)
    clauses = [clause for clause, _ in filters]
    params = [value.value if isinstance(value, Phase) else value for _, value in filters]
    if after is not None:
        clauses.append("id < ?")
        params.append(after)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    # Fetch one extra row to learn whether another page exists without a COUNT.
    rows = conn.execute(f"SELECT * FROM {table} {where} ORDER BY id DESC LIMIT ?", (*params, size + 1)).fetchall()
    items = [convert(row) for row in rows[:size]]
    next_token = encode_page_token(rows[size - 1]["id"], filters) if len(rows) > size else ""
    return items, next_token
