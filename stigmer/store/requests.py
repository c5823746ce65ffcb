"""Request ids (AIP-155): the key that makes a create safe to retry.

A create that carries a request id stores it (and a digest of the request's body) on the record
it makes, under a unique index. A retry finds that record inside the same transaction as the
insert it would otherwise do, so two attempts can never both insert. The key is honoured for a
time-to-live counted from the record's creation; after that the old record lets go of it and
the id may start something new.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from stigmer.errors import AlreadyExistsError

from .sql import Connection, Row

__all__ = ["DEFAULT_REQUEST_ID_TTL", "RequestKey", "body_digest", "claim"]

T = TypeVar("T")

#: How long a request id keeps returning the record it created: AIP-155's "at least an hour";
#: a day covers a client that retries across a long outage.
DEFAULT_REQUEST_ID_TTL = 24 * 3600.0
# Only these fixed names are ever formatted into the SQL below.
_TABLES = frozenset({"agent_executions", "workflow_executions", "workflows"})


@dataclass(frozen=True)
class RequestKey:
    id: str  # a canonical UUID (lowercase, hyphenated); checked by the caller
    digest: str  # body_digest() of what the request asks for
    ttl: float = DEFAULT_REQUEST_ID_TTL

    def __post_init__(self) -> None:
        if not self.id or not self.digest:
            raise ValueError("a request key needs an id and a digest")
        if self.ttl <= 0:
            raise ValueError(f"ttl must be positive, got {self.ttl}")


def body_digest(body: object) -> str:
    """SHA-256 of the body as canonical JSON (sorted keys), so equal requests digest equally."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def claim(
    conn: Connection,
    *,
    table: str,
    kind: str,
    key: RequestKey,
    now: float,
    convert: Callable[[Row], T],
) -> T | None:
    """The live record created with ``key.id`` (same body), or None if the caller may insert one.

    Same id, different body: AlreadyExistsError naming the record. An expired holder gives the id
    up here (its request_id becomes NULL), in the caller's transaction.
    """
    if table not in _TABLES:
        raise ValueError(f"not a table with request ids: {table!r}")
    row = conn.execute(f"SELECT * FROM {table} WHERE request_id = ?", (key.id,)).fetchone()
    if row is None:
        return None
    if row["created_at"] < now - key.ttl:
        conn.execute(
            f"UPDATE {table} SET request_id = NULL, version = version + 1 WHERE id = ?",
            (row["id"],),
        )
        return None
    if row["request_hash"] != key.digest:
        raise AlreadyExistsError(
            f"request_id {key.id} was already used to create {kind} {row['id']} with a different request; "
            "send a new request_id for a new request"
        )
    return convert(row)
