"""The machine as data: every edge (trigger, sources, destination, meaning), the form the
``transitions`` library takes, and the two error helpers the loops share.

The lifecycle (statemachine.lifecycle) binds this table; the diagram (statemachine.diagram) draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from statemachine.states import State, Trigger


class Misconfiguration(Exception):
    """An attempt's failure that retrying soon will not fix: a missing namespace, refused
    credentials, a TLS mismatch, a port that does not speak gRPC. The machine still retries (the
    operator may fix it without restarting us), but at the backoff cap, and requests get no fast
    attempts meanwhile. Raise it (or a subclass) from ``dial`` or ``verify``."""


@dataclass(frozen=True)
class Edge:
    trigger: Trigger
    sources: tuple[State, ...]
    dest: State
    meaning: str


_LIVE: Final = (State.DISCONNECTED, State.CONNECTING, State.CONNECTED, State.UNHEALTHY, State.RECONNECTING)

#: Every edge the machine has. Nothing else is reachable: auto transitions are off and any other
#: trigger raises ``transitions.MachineError`` leaving the state as it was.
TRANSITIONS: Final[tuple[Edge, ...]] = (
    Edge(Trigger.START, (State.DISCONNECTED,), State.CONNECTING, "first dial, and each later retry from DISCONNECTED"),
    Edge(Trigger.CONNECT_OK, (State.CONNECTING,), State.CONNECTED, "dial + namespace check passed"),
    Edge(Trigger.CONNECT_FAILED, (State.CONNECTING,), State.DISCONNECTED, "never connected yet; retry after backoff"),
    Edge(
        Trigger.HEALTH_FAILED,
        (State.CONNECTED,),
        State.UNHEALTHY,
        "health check, worker fatal error, or UNAVAILABLE on a request",
    ),
    Edge(
        Trigger.RECONNECT,
        (State.UNHEALTHY,),
        State.RECONNECTING,
        "backoff elapsed, or a request asked for a fast retry",
    ),
    Edge(Trigger.RECONNECT_OK, (State.RECONNECTING,), State.CONNECTED, "new client dialled and verified"),
    Edge(Trigger.RECONNECT_FAILED, (State.RECONNECTING,), State.UNHEALTHY, "retry after backoff"),
    Edge(Trigger.STOP, _LIVE, State.STOPPED, "shutdown"),
)


def machine_transitions(*, bring_up: str | None = None) -> list[dict[str, Any]]:
    """The table in the form `transitions` takes; ``bring_up`` runs before entering CONNECTED."""
    table: list[dict[str, Any]] = []
    for edge in TRANSITIONS:
        row: dict[str, Any] = {"trigger": edge.trigger, "source": list(edge.sources), "dest": edge.dest}
        if bring_up and edge.trigger.succeeded:
            row["before"] = bring_up
        table.append(row)
    return table


def describe(err: BaseException) -> str:
    """One line for an error, with its type when the message alone would be vague."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, TimeoutError) and not text:
        return "timed out"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
