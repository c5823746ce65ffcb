"""Poll a condition until it holds or a deadline passes.

Tests never sleep to wait for something: they poll with a deadline. The interval sleeps below
are the only sleeps the test suite needs.

`fn` may be written in either of two styles:

* predicate style -- returns a value; a truthy value ends the wait and is returned, a falsy value
  other than ``None`` (``False``, ``0``, ``""``, ``[]``) means "not yet";
* assertion style -- asserts; ``AssertionError`` means "not yet", returning normally (``None``)
  ends the wait.

``None`` therefore counts as success. A predicate like ``lambda: rows.get(key)`` returns ``None``
while the row is missing, so it must be written ``lambda: rows.get(key) is not None`` (or
``key in rows``). Any other exception propagates at once: an unexpected error is a bug, not
"not yet".
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

_NOT_YET = "no attempt finished"


def _describe(value: object) -> str:
    return f"last value: {value!r}"


def _failure(what: str, started: float, last: str) -> AssertionError:
    elapsed = time.monotonic() - started
    return AssertionError(f"timed out after {elapsed:.2f}s waiting for {what}; {last}")


def _is_done(value: object) -> bool:
    # None is the return value of an assertion-style function that did not raise.
    return value is None or bool(value)


@overload
async def eventually(
    fn: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    fn: Callable[[], T],
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    fn: Callable[[], Any],
    *,
    # A deadline argument rather than asyncio.timeout(): the error must name `what` and the last value.
    timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Call `fn` (sync or async) until it succeeds; return its last value.

    Raises AssertionError naming `what`, the elapsed time and the last value or exception when
    `timeout` seconds pass without success. `fn` is always tried at least once, and once more
    at (or just after) the deadline.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = _NOT_YET
    while True:
        try:
            result: Any = fn()
            if inspect.isawaitable(result):
                result = await result
        except AssertionError as exc:
            last = f"last exception: {exc!r}"
        else:
            if _is_done(result):
                return result
            last = _describe(result)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _failure(what, started, last)
        await asyncio.sleep(min(interval, remaining))


def wait_until(
    fn: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Blocking twin of `eventually` for sync tests; `fn` must be synchronous."""
    started = time.monotonic()
    deadline = started + timeout
    last = _NOT_YET
    while True:
        try:
            result = fn()
        except AssertionError as exc:
            last = f"last exception: {exc!r}"
        else:
            if inspect.isawaitable(result):
                # A coroutine is truthy: accepting it would pass without checking anything.
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError("wait_until() needs a synchronous fn; use `await eventually(...)`")
            if _is_done(result):
                return result
            last = _describe(result)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _failure(what, started, last)
        time.sleep(min(interval, remaining))
