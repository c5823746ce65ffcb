"""Agent runners: what actually answers an agent execution.

The runner is pluggable (anything with the `AgentRunner` shape); the built-in `EchoAgentRunner`
is deterministic and offline, so the whole service can be exercised without any model.

Runtime-env keys understood by `EchoAgentRunner` (set per execution, in `runtime_env`):

- ``STIGMER_AGENT_DELAY_SECONDS``: take this many seconds (a number, 0 to 300) before answering,
  heartbeating every ``heartbeat_interval`` (0.5 s) meanwhile. Used to test long-running agents,
  heartbeats, cancellation and worker shutdown.
- ``STIGMER_AGENT_FAIL``: fail deliberately with this text as the reason (after the delay, if
  any). A deliberate failure raises `AgentFailure`, which is never retried.

Any other key is ignored. The reply is ``"[echo] <message>"``; the same input always gives the
same reply.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from typing import Protocol

from stigmer.errors import StigmerError

DELAY_ENV = "STIGMER_AGENT_DELAY_SECONDS"
FAIL_ENV = "STIGMER_AGENT_FAIL"
# Below the run-agent activity's 10-minute start-to-close timeout, so a delayed agent still finishes.
MAX_DELAY_SECONDS = 300.0

Heartbeat = Callable[[], None]


class AgentFailure(StigmerError):
    """The agent itself failed (a bad request, a refusal): retrying gives the same result.

    Any other exception from a runner is treated as transient and retried.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentRunner(Protocol):
    """Runs one agent turn and returns the agent's replies, in order."""

    async def run(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: Mapping[str, str],
        heartbeat: Heartbeat,
    ) -> list[str]:
        """Answer `message` as `agent`. Call `heartbeat()` at least every second while working.

        Raise `AgentFailure` for a failure that a retry would not fix.
        """
        ...


class EchoAgentRunner:
    """Deterministic offline agent: echoes the message; can be slowed down and made to fail."""

    def __init__(self, *, heartbeat_interval: float = 0.5) -> None:
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self._heartbeat_interval = heartbeat_interval

    async def run(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: Mapping[str, str],
        heartbeat: Heartbeat,
    ) -> list[str]:
        delay = _parse_delay(runtime_env.get(DELAY_ENV, ""))
        heartbeat()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        # Sleep in slices so the activity heartbeats while it "thinks"; a cancelled activity
        # (heartbeat timeout, worker shutdown) is interrupted at the next slice.
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(self._heartbeat_interval, remaining))
            heartbeat()
        reason = runtime_env.get(FAIL_ENV, "")
        if reason:
            raise AgentFailure(reason)
        return [f"[echo] {message}"]


def _parse_delay(raw: str) -> float:
    if not raw.strip():
        return 0.0
    try:
        delay = float(raw)
    except ValueError:
        raise AgentFailure(f"{DELAY_ENV} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(delay) or not 0 <= delay <= MAX_DELAY_SECONDS:
        raise AgentFailure(f"{DELAY_ENV} must be between 0 and {MAX_DELAY_SECONDS:g}, got {raw!r}")
    return delay
