"""Semantics of the polling helpers every integration test relies on."""

from __future__ import annotations

import time

import pytest

from stigmer.testing.eventually import eventually, wait_until


class Countdown:
    """Not ready for the first `misses` calls; counts every call."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.calls = 0

    def value(self) -> int:
        self.calls += 1
        return self.calls if self.calls > self.misses else 0

    def check(self) -> None:
        self.calls += 1
        assert self.calls > self.misses, f"only {self.calls} calls"

    async def avalue(self) -> int:
        return self.value()


async def test_returns_first_truthy_value() -> None:
    countdown = Countdown(misses=2)
    assert await eventually(countdown.value, interval=0.001) == 3
    assert countdown.calls == 3


async def test_async_fn_is_awaited() -> None:
    countdown = Countdown(misses=1)
    assert await eventually(countdown.avalue, interval=0.001) == 2


async def test_assertion_style_retries_until_no_assertion_error() -> None:
    countdown = Countdown(misses=3)
    await eventually(countdown.check, interval=0.001)
    assert countdown.calls == 4


@pytest.mark.parametrize("falsy", [False, 0, "", []])
async def test_falsy_values_other_than_none_mean_not_yet(falsy: object) -> None:
    with pytest.raises(AssertionError):
        await eventually(lambda: falsy, timeout=0.05, interval=0.01)


async def test_timeout_names_what_elapsed_and_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as info:
        await eventually(lambda: [], timeout=0.2, interval=0.02, what="the queue to fill")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "the queue to fill" in message
    assert "last value: []" in message
    assert "timed out after 0.2" in message
    assert 0.2 <= elapsed < 1.0


async def test_timeout_reports_last_assertion() -> None:
    def check() -> None:
        raise AssertionError("state is CONNECTING")

    with pytest.raises(AssertionError, match="state is CONNECTING"):
        await eventually(check, timeout=0.05, interval=0.01)


async def test_other_exceptions_propagate_at_once() -> None:
    calls = 0

    def boom() -> bool:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await eventually(boom, timeout=5)
    assert calls == 1


async def test_zero_timeout_still_tries_once() -> None:
    assert await eventually(lambda: "ok", timeout=0) == "ok"


async def test_tries_once_more_at_the_deadline() -> None:
    countdown = Countdown(misses=1)
    # The interval is longer than the timeout: one try at start, one at the deadline.
    assert await eventually(countdown.value, timeout=0.05, interval=10) == 2


def test_wait_until_mirrors_eventually() -> None:
    countdown = Countdown(misses=2)
    assert wait_until(countdown.value, interval=0.001) == 3
    asserting = Countdown(misses=2)
    wait_until(asserting.check, interval=0.001)
    assert asserting.calls == 3
    with pytest.raises(AssertionError, match=r"the port.*last value: False"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, what="the port")


def test_wait_until_rejects_async_fn() -> None:
    async def ready() -> bool:
        return True

    with pytest.raises(TypeError, match="synchronous"):
        wait_until(ready, timeout=1)  # type: ignore[unused-coroutine]
