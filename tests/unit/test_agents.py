"""The built-in deterministic agent runner."""

from __future__ import annotations

import asyncio
import time

import pytest

from stigmer.temporal.agents import DELAY_ENV, FAIL_ENV, AgentFailure, AgentRunner, EchoAgentRunner


class Beats:
    def __init__(self) -> None:
        self.at: list[float] = []

    def __call__(self) -> None:
        self.at.append(time.monotonic())


async def run(runner: EchoAgentRunner, env: dict[str, str], message: str = "hello") -> list[str]:
    return await runner.run(agent="echo", message=message, runtime_env=env, heartbeat=Beats())


async def test_echoes_the_message_deterministically() -> None:
    runner: AgentRunner = EchoAgentRunner()  # satisfies the protocol (checked by mypy)
    beats = Beats()
    first = await runner.run(agent="echo", message="héllo 'world'", runtime_env={}, heartbeat=beats)
    again = await runner.run(agent="other", message="héllo 'world'", runtime_env={"X": "y"}, heartbeat=beats)
    assert first == again == ["[echo] héllo 'world'"]
    assert beats.at, "heartbeats at least once, even without a delay"


async def test_delay_takes_that_long_and_heartbeats_meanwhile() -> None:
    runner = EchoAgentRunner(heartbeat_interval=0.05)
    beats = Beats()
    started = time.monotonic()
    replies = await runner.run(agent="echo", message="m", runtime_env={DELAY_ENV: "0.3"}, heartbeat=beats)
    elapsed = time.monotonic() - started
    assert replies == ["[echo] m"]
    assert 0.3 <= elapsed < 1.5
    assert len(beats.at) >= 6
    gaps = [b - a for a, b in zip([started, *beats.at], beats.at, strict=False)]
    assert max(gaps) < 0.5, gaps


async def test_default_heartbeat_interval_is_half_a_second() -> None:
    beats = Beats()
    started = time.monotonic()
    await EchoAgentRunner().run(agent="echo", message="m", runtime_env={DELAY_ENV: "1.1"}, heartbeat=beats)
    # one at the start, then one per 0.5 s slice (0.5, 1.0, 1.1)
    assert len(beats.at) == 4
    assert 0.4 < beats.at[1] - started < 0.9


async def test_fail_raises_agent_failure_with_the_reason() -> None:
    with pytest.raises(AgentFailure) as raised:
        await run(EchoAgentRunner(), {FAIL_ENV: "the model refused"})
    assert raised.value.reason == "the model refused"
    assert str(raised.value) == "the model refused"


async def test_fail_happens_after_the_delay() -> None:
    started = time.monotonic()
    with pytest.raises(AgentFailure, match="late"):
        await run(EchoAgentRunner(heartbeat_interval=0.05), {DELAY_ENV: "0.2", FAIL_ENV: "late"})
    assert time.monotonic() - started >= 0.2


async def test_empty_values_mean_unset() -> None:
    assert await run(EchoAgentRunner(), {DELAY_ENV: "", FAIL_ENV: ""}) == ["[echo] hello"]


@pytest.mark.parametrize("value", ["soon", "-1", "301", "nan", "inf"])
async def test_bad_delay_is_a_deliberate_failure(value: str) -> None:
    with pytest.raises(AgentFailure, match=DELAY_ENV):
        await run(EchoAgentRunner(), {DELAY_ENV: value})


async def test_cancellation_interrupts_a_long_delay() -> None:
    task = asyncio.create_task(run(EchoAgentRunner(heartbeat_interval=0.05), {DELAY_ENV: "300"}))
    await asyncio.sleep(0.1)  # let it start its delay; cancelling is what is under test
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5


def test_heartbeat_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EchoAgentRunner(heartbeat_interval=0)
