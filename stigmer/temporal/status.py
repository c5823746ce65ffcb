"""ConnectionStatus: what the connection reports about itself (for GetStatus and health).

A leaf (statemachine only): the server imports it without importing the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from statemachine import Snapshot, State


@dataclass(frozen=True, kw_only=True)
class ConnectionStatus:
    snapshot: Snapshot
    workers_running: int
    host_port: str
    namespace: str

    @property
    def state(self) -> State:
        return self.snapshot.state
