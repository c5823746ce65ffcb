"""Agent runners: what actually answers an agent execution.

The runner is pluggable: anything with the `AgentRunner` shape, chosen at start with
``--agent-runner`` / ``STIGMER_AGENT_RUNNER`` (``module:attr``, or a name from the entry point group
``stigmer.agent_runners``; stigmer.temporal.runners loads and checks it). The built-in
`EchoAgentRunner` (``echo``, the default) is deterministic and offline, so the whole service can be
exercised without any model. ``examples/openai_chat_runner.py`` is a complete runner that asks an
HTTP chat-completions endpoint.

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

    Raised from `AgentRunner.run`, it fails the execution at once with ``reason`` as its error
    (never retried). Any other exception from a runner is treated as transient and retried.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentRunner(Protocol):
    """Runs one agent turn and returns the agent's replies, in order.

    The server makes one runner at start (``--agent-runner``; a class is instantiated with no
    arguments, a factory called, an instance used as it is) and calls its `run` for every agent
    execution, from the Temporal activity ``RunAgent``:

    - **Where**: on the workers' event loop, a thread of its own (not the API's loop), and
      concurrently, once per running execution. Never block it: run blocking I/O in a thread
      (``await asyncio.to_thread(...)``) or use an async client.
    - **Heartbeat**: call ``heartbeat()`` at least every second or so while working, also while
      waiting on a model. Temporal declares the attempt dead after 5 s without one (the activity's
      heartbeat timeout) and retries it elsewhere, and a heartbeat is how a cancel reaches the
      runner (the SDK sends them at most once a second and hears the cancel in the answer).
    - **Cancellation** (a user's Cancel, a worker shutting down, an attempt Temporal gave up)
      arrives as `asyncio.CancelledError` at the runner's current ``await``. Let it propagate
      (clean up in ``finally``); do not swallow it.
    - **A deliberate failure** (a refused request, bad input, a 4xx from a model API): raise
      `AgentFailure(reason)`. The execution fails at once with that reason; no retry.
    - **Anything else raised** is transient: Temporal retries the attempt (after 1, 2, 4, 8 s; 5
      attempts in all), then the execution fails with the last error. A retry calls `run` again
      with the same arguments, so `run` should have no side effects that a repeat would double.
    - **Limits**: one attempt may take up to 10 minutes (start-to-close timeout).
    - **Result**: the replies, stored in order as the execution's ``agent`` messages; an empty
      list is a completed execution without replies.
    """

    async def run(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: Mapping[str, str],
        heartbeat: Heartbeat,
    ) -> list[str]:
        """Answer `message` as `agent`; call `heartbeat()` at least every second while working.

        ``agent`` and ``message`` are the execution's; ``runtime_env`` its per-execution settings
        (``-e KEY=VALUE`` on the CLI; the runner decides which keys it understands and ignores the
        rest). Raise `AgentFailure` for a failure that a retry would not fix.
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
