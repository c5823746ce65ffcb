"""A fake of the lifecycle's effects that tracks what is running and can fail on demand."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

EFFECTS = (
    "dial",
    "verify",
    "start_workers",
    "inject_creators",
    "stop_workers",
    "withdraw_creators",
    "close_client",
)


class Boom(RuntimeError):
    """The error a fake effect raises when told to."""


@dataclass(eq=False)
class FakeClient:
    n: int
    closed: int = 0


@dataclass
class FakeEffects:
    calls: list[str] = field(default_factory=list)
    workers_running: bool = False
    creators_injected: bool = False
    open_clients: set[int] = field(default_factory=set)
    #: effect name -> number of further calls that raise
    failing: dict[str, int] = field(default_factory=dict)
    #: effect name -> what its failures raise (default: Boom)
    errors: dict[str, Exception] = field(default_factory=dict)
    #: when set, dial() waits for it (to hold an attempt in flight)
    dial_gate: asyncio.Event | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail(self, effect: str, times: int = 1, *, error: Exception | None = None) -> None:
        """The next ``times`` calls of ``effect`` raise ``error`` (default: Boom)."""
        assert effect in EFFECTS, effect
        self.failing[effect] = times
        if error is not None:
            self.errors[effect] = error

    def count(self, effect: str) -> int:
        return self.calls.count(effect)

    def _maybe_raise(self, effect: str) -> None:
        if self.failing.get(effect, 0) > 0:
            self.failing[effect] -= 1
            raise self.errors.get(effect) or Boom(f"{effect} exploded")

    async def dial(self) -> FakeClient:
        self.calls.append("dial")
        if self.dial_gate is not None:
            await self.dial_gate.wait()
        self._maybe_raise("dial")
        client = FakeClient(next(self._ids))
        self.open_clients.add(client.n)
        return client

    async def verify(self, client: FakeClient) -> None:
        self.calls.append("verify")
        self._maybe_raise("verify")

    async def start_workers(self, client: FakeClient) -> None:
        self.calls.append("start_workers")
        # Fail *after* starting, like a worker that came up and then died: rollback must stop it.
        self.workers_running = True
        await asyncio.sleep(0)
        self._maybe_raise("start_workers")

    async def inject_creators(self, client: FakeClient) -> None:
        self.calls.append("inject_creators")
        self.creators_injected = True
        self._maybe_raise("inject_creators")

    async def stop_workers(self) -> None:
        # Teardown effects release first and report errors after (the Effects contract).
        self.calls.append("stop_workers")
        self.workers_running = False
        await asyncio.sleep(0)
        self._maybe_raise("stop_workers")

    async def withdraw_creators(self) -> None:
        self.calls.append("withdraw_creators")
        self.creators_injected = False
        self._maybe_raise("withdraw_creators")

    async def close_client(self, client: FakeClient) -> None:
        self.calls.append("close_client")
        client.closed += 1
        self.open_clients.discard(client.n)
        self._maybe_raise("close_client")
