"""Record ids: ``<prefix>-<ULID>``, e.g. ``aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD``.

A ULID is 128 bits: a 48-bit Unix time in milliseconds followed by 80 random bits, written as 26
Crockford base32 characters. Because the time comes first and the alphabet is in ASCII order, ids
sort by creation time as plain strings -- the store relies on that for "newest first" listing and
for its page tokens, so ids must also be *strictly* increasing within a process, even when many
are made in the same millisecond or the wall clock steps backwards.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable

__all__ = ["ULID_LENGTH", "UlidGenerator", "is_valid_id", "new_id"]

# Crockford's base32: no I, L, O, U, so ids survive being read aloud or retyped.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_LENGTH = 26
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_TIME_MAX = (1 << 48) - 1
# 26 chars carry 130 bits, so the first char of a 128-bit value is at most "7".
_ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]*")


def _encode(value: int) -> str:
    chars = []
    for _ in range(ULID_LENGTH):
        chars.append(_ALPHABET[value & 0x1F])
        value >>= 5
    return "".join(reversed(chars))


class UlidGenerator:
    """Makes ULIDs that strictly increase, whatever the clock does.

    Within one millisecond (or if the clock goes backwards) the previous value is incremented by
    one instead of drawing fresh randomness -- the "monotonic" ULID rule -- so order never depends
    on luck. ``clock_ms`` and ``random_bits`` are injectable so tests can freeze time.
    """

    def __init__(
        self,
        *,
        clock_ms: Callable[[], int] | None = None,
        random_bits: Callable[[], int] | None = None,
    ) -> None:
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._random_bits = random_bits or (lambda: int.from_bytes(os.urandom(10), "big"))
        self._lock = threading.Lock()
        self._last = -1  # the last 128-bit value handed out

    def next(self) -> str:
        now = self._clock_ms()
        if not 0 <= now <= _TIME_MAX:
            raise ValueError(f"clock out of ULID range: {now} ms")
        with self._lock:
            candidate = (now << _RANDOM_BITS) | (self._random_bits() & _RANDOM_MAX)
            # Same or earlier millisecond than the last id: step the last one instead.
            if (candidate >> _RANDOM_BITS) <= (self._last >> _RANDOM_BITS):
                candidate = self._last + 1
            if candidate >> 128:
                raise OverflowError("ULID space exhausted")
            self._last = candidate
        return _encode(candidate)


# One generator per process: ids are promised to increase across every caller in the process,
# which a per-Store or per-call generator could not guarantee. It holds no resources.
_PROCESS_GENERATOR = UlidGenerator()


def new_id(prefix: str) -> str:
    """Return ``prefix + "-" + ULID``; strictly greater than every id made before in this process."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"id prefix must be lowercase letters/digits starting with a letter, got {prefix!r}")
    return f"{prefix}-{_PROCESS_GENERATOR.next()}"


def is_valid_id(prefix: str, value: str) -> bool:
    """True when ``value`` is ``prefix-`` followed by a canonical (upper-case) 26-char ULID."""
    head = prefix + "-"
    return isinstance(value, str) and value.startswith(head) and _ULID_RE.fullmatch(value, len(head)) is not None
