"""Keyset pagination, newest first.

Ids are ULIDs, so "newest first" is "id descending", and a page can continue strictly after the
last id it returned. That stays correct while rows are inserted or deleted between pages (unlike
OFFSET), and the token is just that id, base64-wrapped so callers treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from .ids import is_valid_id
from .models import Phase

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_page_token", "encode_page_token", "select_page"]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_TOKEN_VERSION = "v1:"
_MAX_TOKEN_LENGTH = 200
# Table names cannot be bound as parameters; only these fixed names are ever interpolated.
_PAGED_TABLES = frozenset({"agent_executions", "workflows", "workflow_executions"})


def normalize_page_size(page_size: int) -> int:
    """0 means "the default" (a proto field left unset); above the maximum is clamped (AIP-158)."""
    if page_size < 0:
        raise ValueError(f"page_size must be 0 (default {DEFAULT_PAGE_SIZE}) or positive, got {page_size}")
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def encode_page_token(last_id: str) -> str:
    """Opaque to callers; it is the last id of the page so the next page starts strictly after it."""
    raw = (_TOKEN_VERSION + last_id).encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_page_token(token: str, *, prefix: str) -> str | None:
    """Return the id to continue after, or None for the first page; ValueError if malformed."""
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
    last_id = text.removeprefix(_TOKEN_VERSION)
    if not text.startswith(_TOKEN_VERSION) or not is_valid_id(prefix, last_id):
        raise ValueError(problem)
    return last_id


def select_page(
    conn: sqlite3.Connection,
    *,
    table: str,
    prefix: str,
    phase: Phase | None,
    page_size: int,
    page_token: str,
    convert: Callable[[sqlite3.Row], T],
) -> tuple[list[T], str]:
    """One page of ``table`` (newest first) and the token for the next page ("" at the end)."""
    if table not in _PAGED_TABLES:
        raise ValueError(f"not a paged table: {table!r}")
    size = normalize_page_size(page_size)
    after = decode_page_token(page_token, prefix=prefix)
    clauses: list[str] = []
    params: list[object] = []
    if phase is not None:
        clauses.append("phase = ?")
        params.append(Phase(phase).value)
    if after is not None:
        clauses.append("id < ?")
        params.append(after)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    # Fetch one extra row to learn whether another page exists without a COUNT.
    rows = conn.execute(f"SELECT * FROM {table} {where} ORDER BY id DESC LIMIT ?", (*params, size + 1)).fetchall()
    items = [convert(row) for row in rows[:size]]
    next_token = encode_page_token(rows[size - 1]["id"]) if len(rows) > size else ""
    return items, next_token
