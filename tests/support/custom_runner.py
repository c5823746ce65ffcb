"""Agent runners for `--agent-runner` tests: one that answers recognizably, in every accepted form
(class, factory, instance), and one of each shape the loader must refuse (stigmer.temporal.runners).

`Runner` is what a real server runs in tests/e2e/test_agent_runner.py: its reply says it came from
here, and names the agent and the process, so the test can tell it from the echo runner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from stigmer.errors import ConfigError
from stigmer.temporal.agents import AgentFailure, Heartbeat

PREFIX = "[custom-runner]"


def reply_for(agent: str, message: str) -> str:
    return f"{PREFIX} {agent} heard {message!r}"


class Runner:
    """Answers ``[custom-runner] <agent> heard '<message>'``; ``message == "refuse"`` is an AgentFailure."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.calls = 0

    async def run(self, *, agent: str, message: str, runtime_env: Mapping[str, str], heartbeat: Heartbeat) -> list[str]:
        heartbeat()
        self.calls += 1
        if message == "refuse":
            raise AgentFailure("the custom runner refuses")
        return [reply_for(agent, message)]


def make_runner() -> Runner:
    """A zero-argument factory."""
    return Runner()


INSTANCE = Runner()


class Holder:
    """``Holder.make`` / ``Holder.instance``: dotted attributes."""

    instance = INSTANCE

    @staticmethod
    def make() -> Runner:
        return Runner()


# -- shapes the loader refuses --------------------------------------------------------------------

NOT_A_RUNNER = 42


class NoRun:
    pass


class SyncRun:
    def run(self, *, agent: str, message: str, runtime_env: Mapping[str, str], heartbeat: Heartbeat) -> list[str]:
        return [message]


class WrongKeywords:
    async def run(self, prompt: str) -> list[str]:
        return [prompt]


class NeedsArguments:
    def __init__(self, url: str) -> None:
        self.url = url

    async def run(self, *, agent: str, message: str, runtime_env: Mapping[str, str], heartbeat: Heartbeat) -> list[str]:
        return [message]


class RefusesToStart:
    def __init__(self) -> None:
        raise ConfigError("STIGMER_CUSTOM_URL is not set")

    async def run(self, *, agent: str, message: str, runtime_env: Mapping[str, str], heartbeat: Heartbeat) -> list[str]:
        return [message]


class BreaksAtStart:
    def __init__(self) -> None:
        raise RuntimeError("boom")

    async def run(self, *, agent: str, message: str, runtime_env: Mapping[str, str], heartbeat: Heartbeat) -> list[str]:
        return [message]


async def async_factory() -> Runner:
    return Runner()


def factory_of_nothing() -> object:
    return object()
